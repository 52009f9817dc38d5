"""The "hf" engine: transformers' `generate`, greedy, in rounds of growing token budgets.

A `generate` call decodes until its longest row stops, finished rows riding along, so one
runaway answer would keep a whole batch decoding to max_new_tokens. Decoding therefore goes in
rounds (round_budgets: 64 new tokens, then 128, 256, ...): a row that has not stopped goes into
the next round with its tokens so far appended to its prompt. Greedy decoding continues a prefix
the same way however it is batched, so rounds change the cost, not the answer (up to
floating-point noise, as any change of batch does). Each round: longest rows first (least
padding), left-padded, `batch_size` rows per call.
"""

from __future__ import annotations

import time
from typing import Any

# New tokens in the first round (the 97th percentile of BC5CDR gold answers is ~64 tokens; rows
# still going get 128 more, then 256, ...) and the most rows in one generate call.
FIRST_ROUND_TOKENS = 64
MAX_AUTO_BATCH = 512
# A static cache per generate call: 1.9x faster on an H100 than one grown by a token per step
# (bench/results/decoding.json): no copy of the whole cache per step, no allocator churn.
KV_CACHE = "static"


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of K and V one token takes in the cache, over all layers, in the model's dtype."""
    config = model.config.get_text_config()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * model.dtype.itemsize


def free_gpu_bytes() -> int:
    """Free GPU memory, counting what torch holds in its cache (e.g. a previous KV cache)."""
    import torch

    free, _ = torch.cuda.mem_get_info()
    return free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()


def auto_batch_size(model: Any, longest: int) -> int:
    """Rows per generate call on a GPU: as many as let a KV cache of `longest` tokens per row fill
    at most half the free GPU memory (the other half: activations, logits, the attention's
    temporaries)."""
    rows = int(free_gpu_bytes() * 0.5 / (kv_bytes_per_token(model) * longest))
    return max(1, min(MAX_AUTO_BATCH, rows))


def left_padded(prompts: list[list[int]], pad_id: int, device: Any) -> dict[str, Any]:
    """`generate` inputs for a batch of token-id prompts, left-padded to the longest so that every
    prompt ends where generation starts."""
    import torch

    width = max(len(p) for p in prompts)
    ids = [[pad_id] * (width - len(p)) + p for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }


def round_budgets(max_new_tokens: int, first: int = FIRST_ROUND_TOKENS) -> list[int]:
    """New tokens per decoding round: `first`, then doubling, summing to max_new_tokens."""
    budgets: list[int] = []
    size = max(1, first)
    while sum(budgets) < max_new_tokens:
        budgets.append(min(size, max_new_tokens - sum(budgets)))
        size *= 2
    return budgets


def pad_token_id(tokenizer: Any, stops: list[int]) -> int:
    """The id left padding uses: the tokenizer's pad token, else the first stop id."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]


def greedy_config(
    max_new_tokens: int, stops: list[int], pad_id: int, kv_cache: str = KV_CACHE, **extra: Any
) -> Any:
    """A fresh greedy GenerationConfig (the model's own may ask for sampling) with `kv_cache`."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=pad_id,
        cache_implementation=None if kv_cache == "dynamic" else kv_cache,
        # A static cache would otherwise trigger torch.compile: minutes per new shape.
        disable_compile=True,
        **extra,
    )


def generate_in_rounds(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[int],
    batch_size: int | None = None,
    progress: bool = False,
    first_round_tokens: int = FIRST_ROUND_TOKENS,
    kv_cache: str = KV_CACHE,
) -> tuple[list[list[int]], dict[str, Any]]:
    """(generated token ids per prompt, stop token included, maybe followed by more; stats).

    batch_size: rows per generate call (None: auto_batch_size on a GPU, 8 on CPU).
    kv_cache: "dynamic" (grows by one token per step) or "static" (allocated once per call for
    the prompt plus the round's budget; not compiled).
    """
    from tqdm import tqdm

    pad_id = pad_token_id(tokenizer, stops)
    stop_set = set(stops)
    generated: list[list[int]] = [[] for _ in prompts]
    pending = list(range(len(prompts)))
    rounds, started = [], time.perf_counter()
    with tqdm(total=len(prompts), desc="generate", unit="row", disable=not progress) as bar:
        for budget in round_budgets(max_new_tokens, first_round_tokens):
            if not pending:
                break
            config = greedy_config(budget, stops, pad_id, kv_cache)
            inputs_of = {i: prompts[i] + generated[i] for i in pending}
            order = sorted(pending, key=lambda i: -len(inputs_of[i]))  # stable: deterministic
            size = batch_size
            if size is None:
                longest = len(inputs_of[order[0]]) + budget
                size = auto_batch_size(model, longest) if model.device.type == "cuda" else 8
            rounds.append(
                {"new_tokens": budget, "rows": len(order), "batch_size": min(size, len(order))}
            )
            still_going = []
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                inputs = left_padded([inputs_of[i] for i in batch], pad_id, model.device)
                output = model.generate(**inputs, generation_config=config)
                width = inputs["input_ids"].shape[1]
                for i, tokens in zip(batch, output[:, width:].tolist(), strict=True):
                    # A row that did not stop decoded the whole budget: no padding in `tokens`.
                    generated[i] += tokens
                    if stop_set.isdisjoint(tokens) and len(generated[i]) < max_new_tokens:
                        still_going.append(i)
                    else:
                        bar.update(1)
            pending = still_going
    return generated, {
        "prefill_seconds": None,  # inside each generate call, not measured apart
        "decode_seconds": round(time.perf_counter() - started, 3),
        "decode_steps": None,  # inside each generate call, which stops early: not counted
        "batch_size": batch_size or "auto",
        "rounds": rounds,
    }
