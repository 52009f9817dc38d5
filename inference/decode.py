"""Greedy decoding of token-id prompts with a loaded model: the one entry point.

    generations, stats = generate_greedy(model, tokenizer, prompts, max_new_tokens, stops)

Two engines give the same tokens (greedy continues a prefix the same way however it is batched,
up to floating-point noise):

- "fast" (inference.fast_decode): our own loop over the model's modules, with a preallocated KV
  cache, prefill without padding waste, CUDA graphs on a GPU. Llama, Mistral, Qwen2 and Phi-3.
- "hf" (inference.hf_rounds): transformers' `generate` in rounds of growing token budgets. Any
  model `generate` supports.

"auto" picks fast where it applies, else hf. The model may be anything with those modules: a
merged model, a peft model with its adapter unmerged, a 4-bit bitsandbytes base, a model in
training mode (put in eval mode while decoding, then restored).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENGINES = ("auto", "fast", "hf")
# Model types whose decoder layers the fast engine knows (fast_decode.attention_projections).
FAST_MODEL_TYPES = ("llama", "mistral", "qwen2", "phi3")


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (a stop token reached) or "length" (ran out of max_new_tokens)
    new_tokens: int  # generated tokens, the stop token included


def finish(tokens: list[int], stop_ids: set[int], tokenizer: Any) -> Generation:
    """Cut at the first stop token; decode what came before it."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            text = tokenizer.decode(tokens[:position], skip_special_tokens=True)
            return Generation(text, "stop", position + 1)
    return Generation(tokenizer.decode(tokens, skip_special_tokens=True), "length", len(tokens))


def causal_lm(model: Any) -> Any:
    """The transformers *ForCausalLM inside a DDP and/or peft wrapper (LoRA layers stay in it),
    or the model itself."""
    while hasattr(model, "module") and not hasattr(model, "config"):  # DistributedDataParallel
        model = model.module
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def sliding_window(config: Any) -> int | None:
    """The attention window the model uses, if any (the fast engine attends to every position)."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    return int(window)


def choose_engine(model: Any, requested: str = "auto", longest: int = 0) -> tuple[str, str]:
    """(engine, why) for this model, for rows of up to `longest` tokens (prompt plus answer):
    "fast" or "hf"."""
    if requested not in ENGINES:
        raise ValueError(f"engine {requested!r}: expected one of {', '.join(ENGINES)}")
    config = causal_lm(model).config
    model_type = getattr(config, "model_type", None)
    window = sliding_window(config)
    problem = None
    if model_type not in FAST_MODEL_TYPES:
        known = ", ".join(FAST_MODEL_TYPES)
        problem = f"the fast engine decodes {known} models, not {model_type!r}"
    elif window is not None and longest > window:
        problem = f"rows of up to {longest} tokens outrun the model's {window}-token sliding window"
    if requested == "hf":
        return "hf", "requested"
    if requested == "fast":
        if problem:
            raise ValueError(problem)
        return "fast", "requested"
    if problem:
        return "hf", f"auto: {problem}"
    return "fast", f"auto: {model_type} model"


def _decode_with(
    engine: str, model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int,
    stops: list[int], batch_size: int | None, progress: bool, keep_state: bool,
    max_cache_gib: float | None, on_done: Any, **hf_options: Any,
) -> tuple[list[list[int]], dict[str, Any]]:  # fmt: skip
    """The chosen engine's (token ids per prompt, stats); on_done(index, tokens) as rows finish
    (the fast engine: during decoding; hf: all at the end)."""
    if engine == "fast":
        from inference.fast_decode import fast_generate

        return fast_generate(
            model, prompts, max_new_tokens, stops, batch_size, progress,
            keep_state=keep_state, max_cache_gib=max_cache_gib, on_done=on_done,
        )  # fmt: skip
    from inference.hf_rounds import generate_in_rounds

    tokens, stats = generate_in_rounds(
        model, tokenizer, prompts, max_new_tokens, stops, batch_size, progress, **hf_options
    )
    for index, row in enumerate(tokens if on_done else []):
        on_done(index, row)
    return tokens, stats


def _reporter(on_done: Callable | None, stop_set: set[int], tokenizer: Any) -> Callable | None:
    """on_done(index, Generation) as the engines' on_done(index, token ids)."""
    if on_done is None:
        return None
    return lambda index, row: on_done(index, finish(row, stop_set, tokenizer))


def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[int],
    batch_size: int | None = None,
    progress: bool = False,
    engine: str = "auto",
    max_cache_gib: float | None = None,
    keep_state: bool | None = None,
    on_done: Callable[[int, Generation], None] | None = None,
    **hf_options: Any,
) -> tuple[list[Generation], dict[str, Any]]:
    """(one Generation per prompt in input order, stats).

    stops: token ids that end an answer (the stop token counts in `new_tokens`, not in `text`).
    batch_size: rows decoded together (None: sized from free GPU memory; 8 rows per generate call
    on CPU for hf, every row at once for fast). progress: a tqdm bar on stderr. hf_options:
    `first_round_tokens`, `kv_cache` of the hf engine (inference.hf_rounds). max_cache_gib: a cap
    on the fast engine's KV cache (fewer rows in flight), for decoding beside training.
    keep_state: whether the fast engine keeps its KV cache and CUDA graphs for the next call
    (default: unless the model is in training mode; a training loop passes False: between its
    evaluations the memory belongs to training).
    on_done(index, generation): called as each answer is done (fast: while others decode).
    stats: engine, engine_reason, seconds, prefill_seconds, decode_seconds, decode_steps,
    generated_tokens, tokens_per_second, plus the engine's own (hf: rounds; fast: rows in flight,
    admissions, buckets, graphs).
    """
    import torch

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    longest = max(map(len, prompts), default=0) + max_new_tokens
    chosen, why = choose_engine(model, engine, longest)
    stop_set = set(stops)
    was_training = model.training
    model.eval()  # no dropout while decoding, whatever the caller (a training loop) had set
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            tokens, stats = _decode_with(
                chosen, model, tokenizer, prompts, max_new_tokens, stops, batch_size, progress,
                keep_state=not was_training if keep_state is None else keep_state,
                max_cache_gib=max_cache_gib, on_done=_reporter(on_done, stop_set, tokenizer),
                **hf_options,
            )  # fmt: skip
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - started
    generations = [finish(row, stop_set, tokenizer) for row in tokens]
    generated = sum(g.new_tokens for g in generations)
    return generations, {
        "engine": chosen,
        "engine_reason": why,
        "seconds": round(seconds, 3),
        **stats,
        "generated_tokens": generated,
        "tokens_per_second": round(generated / seconds, 1) if seconds else None,
    }
