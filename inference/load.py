"""Load a model to decode with: bf16 (fp16 where bf16 is unsupported) on a GPU, fp32 on CPU, the
LoRA adapter merged into the weights, eval mode."""

from __future__ import annotations

from typing import Any


def device_and_dtype() -> tuple[str, Any]:
    """("cuda", bf16 or fp16 where bf16 is unsupported) with a GPU, else ("cpu", fp32)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", torch.float32
    return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_model(model_path: str, adapter: str | None, tokenizer: Any) -> Any:
    """A transformers model (a merged one, or a base plus LoRA adapter, merged here) on
    device_and_dtype()'s device and dtype, in eval mode."""
    from transformers import AutoModelForCausalLM

    device, dtype = device_and_dtype()
    # Straight onto the device (and the adapter merged there): loading to CPU first and then
    # moving took 15 s for a 3B model on an H100 machine.
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, device_map=device)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # training added tokens (e.g. a pad token)
    if adapter:
        from peft import PeftModel

        # Folded into the weights: one matmul per projection instead of three at every decoding
        # step (decoding is bound by per-step work; this roughly halves the step time on a GPU).
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(device).eval()


def device_name() -> str:
    """The GPU's name, or "cpu"."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
