"""Optional: greedy decoding with vLLM (continuous batching; the LoRA adapter applied per request).
Used only when vLLM is installed and a GPU is present, and asked for (`--engine vllm`)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from inference.decode import Generation
from inference.run import ModelSource, RunError, stop_token_ids

# vLLM only accepts these LoRA ranks as its maximum.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_available() -> bool:
    """vLLM installed and a CUDA GPU present."""
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def generate_vllm(
    source: ModelSource, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int
) -> tuple[list[Generation], dict[str, Any]]:
    """(one Generation per prompt, stats with seconds and load_seconds)."""
    if not vllm_available():
        raise RunError("the vllm engine needs vLLM installed and a CUDA GPU")
    import torch
    from transformers import GenerationConfig
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    try:
        generation_config = GenerationConfig.from_pretrained(source.model)
    except OSError:
        generation_config = None
    stops = stop_token_ids(tokenizer, generation_config)
    options: dict[str, Any] = {}
    lora = None
    if source.adapter:
        rank = json.loads((Path(source.adapter) / "adapter_config.json").read_text())["r"]
        max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
        options = {"enable_lora": True, "max_loras": 1, "max_lora_rank": max_rank}
        lora = LoRARequest("run", 1, source.adapter)
    loading = time.perf_counter()
    llm = LLM(
        model=source.model,
        tokenizer=source.tokenizer,
        seed=0,
        max_model_len=max(map(len, prompts)) + max_new_tokens,
        **options,
    )
    params = SamplingParams(
        temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=stops, skip_special_tokens=True
    )
    started = time.perf_counter()
    outputs = llm.generate(
        [{"prompt_token_ids": p} for p in prompts], params, lora_request=lora, use_tqdm=True
    )
    seconds = time.perf_counter() - started
    results = []
    for output in outputs:
        best = output.outputs[0]
        reason = "stop" if best.finish_reason == "stop" else "length"
        results.append(Generation(best.text, reason, len(best.token_ids)))
    generated = sum(g.new_tokens for g in results)
    return results, {
        "engine": "vllm",
        "seconds": round(seconds, 3),
        "load_seconds": round(started - loading, 3),
        "generated_tokens": generated,
        "tokens_per_second": round(generated / seconds, 1) if seconds else None,
        "device": torch.cuda.get_device_name(),
        "dtype": "auto (vLLM)",
        "stop_token_ids": stops,
    }
