"""Generate answers for the test split with a run (or a recipe's untuned base model), then score.

    python -m eval generate --run runs/<recipe>-<stamp> [--merged]
    python -m eval generate --base <recipe> --processed data/processed

Prompts are the rows' chat messages without the assistant turn, rendered with the run's own
tokenizer and chat template (exactly what training saw) plus the generation prompt. Decoding is
greedy, batched with left padding, and stops at the template's end-of-turn token. vLLM is used when
it is installed and a GPU is present, HF `generate` otherwise (in rounds of growing token budgets,
see generate_greedy); metrics.json records which.
Writes <run>/eval/{predictions.jsonl, metrics.json, report.md, f1.png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from eval.runs import add_run_argument, no_run_message
from eval.score import InputError, check_row, read_jsonl, score_rows

ROOT = Path(__file__).resolve().parents[1]
# Budget for one answer: 1.5 x the longest gold answer of the split (in tokens), within these.
MIN_NEW_TOKENS, MAX_NEW_TOKENS = 32, 1024
# HF decoding: new tokens in the first round (the 97th percentile of BC5CDR gold answers is ~64
# tokens; rows still going get 128 more, then 256, ...) and the most rows in one generate call.
FIRST_ROUND_TOKENS = 64
MAX_AUTO_BATCH = 512
# A static cache per generate call: 1.9x faster on an H100 than one grown by a token per step
# (bench/results/decoding.json): no copy of the whole cache per step, no allocator churn.
KV_CACHE = "static"
# vLLM only accepts these LoRA ranks as its maximum.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class Target:
    """What to evaluate and where the results go."""

    kind: str  # "fine-tuned", "merged" or "base"
    model: str  # base model id/path, or the merged model's directory
    adapter: str | None  # LoRA adapter directory, None for base and merged
    tokenizer: str  # where the tokenizer (and normally its chat template) is loaded from
    # Base eval only: the recipe's (chat_template, chat_template_jinja), resolved by Axolotl.
    chat_template: tuple[str, str | None] | None
    test_file: Path
    out_dir: Path
    recipe: str | None
    run: str | None


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (end-of-turn reached) or "length" (ran out of max_new_tokens)
    tokens: int  # generated tokens, the stop token included


# ---- what to evaluate -----------------------------------------------------------------------


def _local_or_hub(name: str) -> str:
    """A relative local path (e.g. models/built/tiny) works from any cwd; else a hub id."""
    for candidate in (Path(name), ROOT / name):
        if candidate.exists():
            return str(candidate)
    return name


def _read_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a YAML mapping")
    return data


def resolve_run(run_dir: Path, split_file: Path | None, merged: bool) -> Target:
    """A training run: run.json / config.yml say the base model and the test split."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    config = _read_yaml(run_dir / "config.yml") if (run_dir / "config.yml").exists() else {}
    base_model = info.get("base_model") or config.get("base_model")
    if not base_model:
        raise InputError(f"{run_dir}: neither run.json nor config.yml names a base_model")
    test_file = split_file or _test_file_of(info, config, run_dir)
    if merged:
        model_dir = run_dir / "merged"
        if not (model_dir / "config.json").exists():
            raise InputError(f"{model_dir}: no merged model (run `make merge RUN={run_dir}`)")
        model, adapter, kind = str(model_dir), None, "merged"
        tokenizer = str(model_dir if (model_dir / "tokenizer_config.json").exists() else run_dir)
    else:
        if not (run_dir / "adapter_config.json").exists():
            raise InputError(f"{run_dir}: no adapter_config.json (did training finish?)")
        model, adapter, kind = _local_or_hub(base_model), str(run_dir), "fine-tuned"
        tokenizer = str(run_dir)
    if not (Path(tokenizer) / "tokenizer_config.json").exists():
        raise InputError(f"{tokenizer}: no saved tokenizer (tokenizer_config.json)")
    return Target(
        kind=kind,
        model=model,
        adapter=adapter,
        tokenizer=tokenizer,
        chat_template=None,  # the saved tokenizer carries the template used in training
        test_file=test_file,
        out_dir=run_dir / "eval",
        recipe=info.get("recipe"),
        run=str(run_dir),
    )


def _test_file_of(info: dict, config: dict, run_dir: Path) -> Path:
    """run.json's test file; else test.jsonl beside the processed data the run trained on."""
    if info.get("test_file"):
        return Path(_local_or_hub(info["test_file"]))
    processed = info.get("processed_dir") or info.get("processed")
    if not processed:
        datasets = config.get("datasets") or [{}]
        train_path = datasets[0].get("path", "") if isinstance(datasets[0], dict) else ""
        processed = str(Path(train_path).parent) if train_path.endswith("train.jsonl") else None
    if processed:
        return Path(_local_or_hub(processed)) / "test.jsonl"
    raise InputError(f"{run_dir}/run.json names no test_file or processed_dir: pass --split-file")


def resolve_base(
    recipe: str, processed: Path | None, split_file: Path | None, runs_dir: Path
) -> Target:
    """The untuned base model of a recipe, with the chat template the recipe trains with."""
    path = Path(recipe)
    if path.suffix not in (".yml", ".yaml"):
        path = Path(_local_or_hub(f"recipes/{recipe}.yml"))
    if not path.exists():
        raise InputError(f"{path}: no such recipe")
    config = _read_yaml(path)
    if not config.get("base_model"):
        raise InputError(f"{path}: no base_model")
    if split_file is None and processed is None:
        raise InputError("--base needs --processed DIR (or --split-file)")
    base_model = _local_or_hub(config["base_model"])
    return Target(
        kind="base",
        model=base_model,
        adapter=None,
        tokenizer=_local_or_hub(config.get("tokenizer_config") or config["base_model"]),
        chat_template=_recipe_chat_template(config),
        test_file=split_file or processed / "test.jsonl",
        out_dir=runs_dir / f"{path.stem}-base" / "eval",
        recipe=path.stem,
        run=None,
    )


def _recipe_chat_template(config: dict) -> tuple[str, str | None]:
    """The recipe's chat template choice as Axolotl reads it (dataset entry, else top level)."""
    from axolotl.utils.chat_templates import extract_chat_template_args

    datasets = config.get("datasets") or []
    dataset = datasets[0] if datasets and isinstance(datasets[0], dict) else None
    return extract_chat_template_args(config, dataset)


# ---- prompts, stop tokens, token budget ------------------------------------------------------


def load_test_rows(path: Path, limit: int | None) -> tuple[list[dict], int]:
    """(rows to evaluate, rows in the file); every row is checked before any model is loaded."""
    numbered = read_jsonl(path)
    for number, row in numbered:
        where = f"{path}:{number}"
        check_row({**row, "prediction": ""}, where)
        messages = row.get("messages")
        if not (
            isinstance(messages, list)
            and len(messages) >= 2
            and all(isinstance(m, dict) for m in messages)
            and messages[-1].get("role") == "assistant"
        ):
            raise InputError(
                f"{where}: 'messages' must be a list of chat turns ending with the "
                "assistant's answer"
            )
    rows = [row for _, row in numbered]
    return rows[:limit] if limit is not None else rows, len(rows)


def encode_prompts(tokenizer: Any, rows: list[dict]) -> list[list[int]]:
    """Token ids of each row's chat without its answer, plus the assistant header."""
    prompts = []
    for row in rows:
        text = tokenizer.apply_chat_template(
            row["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        # The template already wrote the BOS token; the tokenizer must not add a second one.
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompts


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """EOS ids of tokenizer and model, plus the token the chat template ends a turn with.

    The end-of-turn token is found by rendering a short chat and looking at what the template
    writes right after the assistant's words (<|eot_id|> for Llama-3, <|im_end|> for ChatML...).
    """
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    model_eos = getattr(generation_config, "eos_token_id", None)
    if model_eos is not None:
        ids.update([model_eos] if isinstance(model_eos, int) else model_eos)
    marker = "Marker4417"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}],
            tokenize=False,
        )
    except Exception as error:  # noqa: BLE001 - a template may reject this minimal chat
        print(
            f"warning: could not render a chat to find the end-of-turn token: {error}",
            file=sys.stderr,
        )
        return sorted(ids)
    if marker not in text:  # the template dropped the assistant's words: nothing to learn
        return sorted(ids)
    tail = tokenizer(text.split(marker, 1)[1], add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    if tail and tail[0] in special:
        ids.add(tail[0])
    if not ids:
        raise InputError("the tokenizer has no EOS and its chat template no end-of-turn token")
    return sorted(ids)


def default_max_new_tokens(tokenizer: Any, rows: list[dict]) -> int:
    """1.5 x the longest gold answer in tokens (+ the stop token), within sane bounds."""
    longest = max(
        len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows
    )
    return min(MAX_NEW_TOKENS, max(MIN_NEW_TOKENS, math.ceil(1.5 * longest) + 1))


def _finish(tokens: list[int], stop_ids: set[int], tokenizer: Any) -> Generation:
    """Cut at the first stop token; decode what came before it."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            text = tokenizer.decode(tokens[:position], skip_special_tokens=True)
            return Generation(text, "stop", position + 1)
    return Generation(tokenizer.decode(tokens, skip_special_tokens=True), "length", len(tokens))


# ---- backends --------------------------------------------------------------------------------


def choose_backend(requested: str) -> tuple[str, str]:
    """(backend, why): vLLM when asked for or (auto) when installed with a GPU, else HF."""
    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    has_gpu = torch.cuda.is_available()
    if requested == "hf":
        return "hf", "requested with --backend hf"
    if requested == "vllm":
        if not (has_vllm and has_gpu):
            raise InputError("--backend vllm needs vLLM installed and a CUDA GPU")
        return "vllm", "requested with --backend vllm"
    if has_vllm and has_gpu:
        return "vllm", "auto: vLLM is installed and a GPU is present"
    return "hf", "auto: " + ("no CUDA GPU" if not has_gpu else "vLLM is not installed")


def load_tokenizer(target: Target) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target.tokenizer)
    if target.chat_template is not None:
        # Axolotl's own resolution ("llama3", "chatml", "tokenizer_default", "jinja", ...), so
        # base eval renders prompts exactly as training with this recipe would.
        from axolotl.utils.chat_templates import get_chat_template

        choice, jinja = target.chat_template
        try:
            tokenizer.chat_template = get_chat_template(choice, jinja, tokenizer)
        except ValueError as error:
            raise InputError(f"chat_template {choice!r}: {error}") from None
    if not tokenizer.chat_template:
        raise InputError(f"{target.tokenizer}: the tokenizer has no chat template")
    tokenizer.padding_side = "left"
    return tokenizer


def hf_device_and_dtype() -> tuple[str, Any]:
    """("cuda", bf16 or fp16 where bf16 is unsupported) with a GPU, else ("cpu", fp32)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", torch.float32
    return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_hf_model(model_path: str, adapter: str | None, tokenizer: Any) -> Any:
    """A transformers model (a merged one, or a base plus LoRA adapter) ready for generate_greedy:
    on hf_device_and_dtype()'s device and dtype, in eval mode."""
    from transformers import AutoModelForCausalLM

    device, dtype = hf_device_and_dtype()
    # Straight onto the device (and the adapter merged there): loading to CPU first and then
    # moving took 15 s for a 3B model on an H100 machine.
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, device_map=device)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # training added tokens (e.g. a pad token)
    if adapter:
        from peft import PeftModel

        # Folded into the weights: one matmul per projection instead of three at every decoding
        # step (generation is launch-bound; this roughly halves the step time on a GPU).
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(device).eval()


def auto_batch_size(model: Any, longest: int) -> int:
    """Rows per generate call on a GPU: as many as let a KV cache of `longest` tokens per row fill
    at most half the free GPU memory (the other half: activations, logits, the attention's
    temporaries)."""
    import torch

    config = model.config.get_text_config()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    bytes_per_token = 2 * config.num_hidden_layers * heads * head_dim * model.dtype.itemsize
    free, _ = torch.cuda.mem_get_info()
    # Memory torch holds in its cache (e.g. the previous round's KV cache) is free to us too.
    free += torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    return max(1, min(MAX_AUTO_BATCH, int(free * 0.5 / (bytes_per_token * longest))))


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


def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[int],
    batch_size: int | None = None,
    progress: bool = False,
    first_round_tokens: int = FIRST_ROUND_TOKENS,
    kv_cache: str = KV_CACHE,
) -> tuple[list[Generation], list[dict[str, int]]]:
    """Greedy decoding of token-id prompts with a loaded model: (results in input order, rounds).

    A `generate` call decodes until its longest row stops, finished rows riding along, so one
    runaway answer would keep a whole batch decoding to max_new_tokens. Decoding therefore goes
    in rounds (round_budgets: 64 new tokens, then 128, 256, ...): a row that has not stopped
    goes into the next round with its tokens so far appended to its prompt. Greedy decoding
    continues a prefix the same way however it is batched, so rounds change the cost, not the
    answer (up to floating-point noise, as any change of batch does).
    Each round: longest rows first (least padding), left-padded, `batch_size` rows per call
    (None: auto_batch_size on a GPU, 8 on CPU); each answer is cut at its first stop id.
    kv_cache: "dynamic" (grows by one token per step) or "static" (allocated once per call for
    the prompt plus the round's budget; not compiled).
    """
    import torch
    from tqdm import tqdm

    pad_id = pad_token_id(tokenizer, stops)
    stop_set = set(stops)
    generated: list[list[int]] = [[] for _ in prompts]
    pending = list(range(len(prompts)))
    rounds = []
    bar = tqdm(total=len(prompts), desc="generate", unit="row", disable=not progress)
    with torch.inference_mode(), bar:
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
    results = [_finish(tokens, stop_set, tokenizer) for tokens in generated]
    return results, rounds


def generate_hf(
    target: Target,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None,
) -> tuple[list[Generation], dict[str, Any]]:
    """The target's model loaded with transformers, then generate_greedy over all prompts."""
    import torch

    started = time.perf_counter()
    model = load_hf_model(target.model, target.adapter, tokenizer)
    loaded = time.perf_counter()
    device, dtype = hf_device_and_dtype()
    stops = stop_token_ids(tokenizer, model.generation_config)
    results, rounds = generate_greedy(
        model, tokenizer, prompts, max_new_tokens, stops, batch_size, progress=True
    )
    settings = {
        "seconds": time.perf_counter() - loaded,
        "load_seconds": loaded - started,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": batch_size or "auto",
        "rounds": rounds,
        "stop_token_ids": stops,
    }
    return results, settings


def generate_vllm(
    target: Target, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int
) -> tuple[list[Generation], dict[str, Any]]:
    """Greedy decoding with vLLM (continuous batching; the LoRA adapter applied per request)."""
    from transformers import GenerationConfig
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    try:
        generation_config = GenerationConfig.from_pretrained(target.model)
    except OSError:
        generation_config = None
    stops = stop_token_ids(tokenizer, generation_config)
    options: dict[str, Any] = {}
    lora = None
    if target.adapter:
        rank = json.loads((Path(target.adapter) / "adapter_config.json").read_text())["r"]
        max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
        options = {"enable_lora": True, "max_loras": 1, "max_lora_rank": max_rank}
        lora = LoRARequest("run", 1, target.adapter)
    loading = time.perf_counter()
    llm = LLM(
        model=target.model,
        tokenizer=target.tokenizer,
        seed=0,
        max_model_len=max(map(len, prompts)) + max_new_tokens,
        **options,
    )
    params = SamplingParams(
        temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=stops, skip_special_tokens=True
    )
    started = time.perf_counter()
    load_seconds = started - loading
    outputs = llm.generate(
        [{"prompt_token_ids": p} for p in prompts], params, lora_request=lora, use_tqdm=True
    )
    seconds = time.perf_counter() - started
    results = []
    for output in outputs:
        best = output.outputs[0]
        reason = "stop" if best.finish_reason == "stop" else "length"
        results.append(Generation(best.text, reason, len(best.token_ids)))
    import torch

    settings = {
        "seconds": seconds,
        "load_seconds": load_seconds,
        "device": torch.cuda.get_device_name(),
        "dtype": "auto (vLLM)",
        "batch_size": None,
        "stop_token_ids": stops,
    }
    return results, settings


# ---- the command -----------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_eval(
    target: Target,
    limit: int | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Generate, score and report; returns the metrics written to metrics.json."""
    import torch

    from eval.report import write_plot, write_report

    rows, rows_in_split = load_test_rows(target.test_file, limit)
    if not rows:
        raise InputError(f"{target.test_file}: no rows to evaluate")
    full_eval_dir = target.out_dir
    target = dataclasses.replace(target, out_dir=eval_dir(full_eval_dir, len(rows), rows_in_split))
    torch.manual_seed(0)
    started = time.perf_counter()
    tokenizer = load_tokenizer(target)
    prompts = encode_prompts(tokenizer, rows)
    max_new_tokens = max_new_tokens or default_max_new_tokens(tokenizer, rows)
    chosen, why = choose_backend(backend)
    print(
        f"backend: {chosen} ({why}); {len(rows)} rows; max_new_tokens={max_new_tokens}",
        file=sys.stderr,
    )
    generations = None
    if chosen == "vllm":
        try:
            generations, settings = generate_vllm(target, tokenizer, prompts, max_new_tokens)
        except Exception as error:
            if backend == "vllm":
                raise
            # e.g. a LoRA layout vLLM does not support: still evaluate, and say so everywhere.
            chosen, why = "hf", f"auto: vLLM failed ({type(error).__name__}: {error}), used HF"
            print(f"warning: {why}", file=sys.stderr)
    if generations is None:
        generations, settings = generate_hf(target, tokenizer, prompts, max_new_tokens, batch_size)
    seconds = settings.pop("seconds")  # the decoding alone
    load_seconds = settings.pop("load_seconds")  # loading the model (and merging its adapter)

    target.out_dir.mkdir(parents=True, exist_ok=True)
    predictions = [
        {
            **row,
            "prediction": g.text,
            "finish_reason": g.finish_reason,
            "generated_tokens": g.tokens,
        }
        for row, g in zip(rows, generations, strict=True)
    ]
    predictions_path = target.out_dir / "predictions.jsonl"
    with open(predictions_path, "w", encoding="utf-8") as handle:
        for row in predictions:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    tokens = sum(g.tokens for g in generations)
    metrics = score_rows(predictions, str(predictions_path))
    metrics.update(
        {
            "kind": target.kind,
            "recipe": target.recipe,
            "run": target.run,
            "model": target.model,
            "adapter": target.adapter,
            "split_file": str(target.test_file),
            "split_sha256": sha256_of(target.test_file),
            "rows_evaluated": len(rows),
            "rows_in_split": rows_in_split,
            "backend": chosen,
            "backend_reason": why,
            **settings,
            "max_new_tokens": max_new_tokens,
            "hit_max_new_tokens": sum(g.finish_reason == "length" for g in generations),
            "timing": {
                "seconds": round(seconds, 3),
                "rows_per_second": round(len(rows) / seconds, 3) if seconds else None,
                "generated_tokens": tokens,
                "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
                "load_seconds": round(load_seconds, 3),
                "total_seconds": round(time.perf_counter() - started, 3),  # loading included
            },
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    (target.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(target.out_dir, metrics, predictions)
    write_plot(target.out_dir, metrics)
    if target.out_dir != full_eval_dir:
        pass  # a partial eval: the full one, the card and the base comparisons stay as they are
    elif target.run:
        refresh_model_card(Path(target.run))
    else:  # a new base eval: the recipe's evaluated runs can now show base vs fine-tuned
        for run_dir in runs_of_recipe(target.out_dir.parent.parent, target.recipe):
            refresh_outputs(run_dir)
    return metrics


def eval_dir(full: Path, rows_evaluated: int, rows_in_split: int) -> Path:
    """Where an eval goes: ``full`` (eval/) for the whole split; eval-limit<N>/ beside it for the
    first N rows, so a quick --limit look never replaces the full evaluation."""
    if rows_evaluated >= rows_in_split:
        return full
    return full.with_name(f"{full.name}-limit{rows_evaluated}")


def runs_of_recipe(runs_dir: Path, recipe: str | None) -> list[Path]:
    """Evaluated runs (not base evals) of a recipe under runs_dir."""
    found = []
    for path in sorted(runs_dir.glob("*/eval/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("recipe") == recipe and metrics.get("kind") != "base":
            found.append(path.parent.parent)
    return found


def refresh_outputs(run_dir: Path) -> None:
    """Rewrite a run's report.md and f1.png from its saved eval, then its model card."""
    from eval.report import write_plot, write_report

    out = run_dir / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = [row for _, row in read_jsonl(out / "predictions.jsonl")]
    write_report(out, metrics, predictions)
    write_plot(out, metrics)
    refresh_model_card(run_dir)


def refresh_model_card(run_dir: Path) -> None:
    """The run's README.md carries the eval results; pushed when hub pushes are on.

    The eval itself is already on disk, so a failing card only warns (training/model_card.py).
    """
    from training.model_card import refresh_model_card as rewrite_and_push_card

    rewrite_and_push_card(run_dir)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate on the test split with a run (or a recipe's base model) and score it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()  # neither: main() lists the runs to pick from
    add_run_argument(which)
    which.add_argument(
        "--base",
        metavar="RECIPE",
        help="evaluate RECIPE's untuned base model (name in recipes/ or a .yml)",
    )
    parser.add_argument("--processed", type=Path, help="processed data dir (with --base)")
    parser.add_argument("--split-file", type=Path, help="test JSONL (default: the run's)")
    parser.add_argument("--merged", action="store_true", help="use RUN/merged instead of adapter")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where --base results go: RUNS_DIR/<recipe>-base/eval (default runs)",
    )
    parser.add_argument("--limit", type=int, help="only the first N rows of the split")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="HF backend: rows per generate call (default 8 on CPU; on a GPU, sized per round "
        "from free memory, at most 512)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, help="default: 1.5 x the longest gold answer, 32..1024"
    )
    parser.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.run is None and args.base is None:
        print(no_run_message("eval", args.runs_dir), file=sys.stderr)
        return 2
    try:
        if args.run is not None:
            if args.processed is not None:
                raise InputError("--processed goes with --base; a run knows its own split")
            target = resolve_run(args.run, args.split_file, args.merged)
        else:
            if args.merged:
                raise InputError("--merged goes with --run")
            target = resolve_base(args.base, args.processed, args.split_file, args.runs_dir)
        for name in ("limit", "batch_size", "max_new_tokens"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        metrics = run_eval(target, args.limit, args.batch_size, args.max_new_tokens, args.backend)
    except (InputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    normalized = metrics["normalized"]
    print(
        "normalized F1: "
        + ", ".join(f"{task} {c['f1']:.3f}" for task, c in normalized["per_task"].items())
        + f"; micro {normalized['micro']['f1']:.3f}; macro {normalized['macro_f1']:.3f}"
    )
    out = eval_dir(target.out_dir, metrics["rows_evaluated"], metrics["rows_in_split"])
    print(f"wrote {out}/{{predictions.jsonl,metrics.json,report.md,f1.png}}")
    if out != target.out_dir:
        print(f"partial evaluation (--limit): {target.out_dir}/ and the model card are unchanged")
    return 0
