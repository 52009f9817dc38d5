"""What actually runs inside a model: attention backend and the non-stock code paths patched in.

Read off the live model after the trainer is built, so the benchmark reports what ran, not what
a config asked for: the attention implementation, module classes from outside torch and
transformers (bitsandbytes 4-bit linears, PEFT LoRA layers, Liger norms), and forwards replaced
on single modules or on the model class (Axolotl's LoRA kernels, Liger's fused cross-entropy).
"""

from __future__ import annotations

import sys
from typing import Any

# transformers' own code, and the `kernels` hub wrappers it puts around some functions (which
# call the stock function unless a model is explicitly kernelized).
STOCK = ("torch.", "transformers.", "kernels.")


def _origin(fn: Any) -> str | None:
    if fn is None:
        return None
    fn = getattr(fn, "__func__", fn)
    if not hasattr(fn, "__qualname__"):  # a callable object: name its class
        fn = type(fn)
    return f"{fn.__module__}.{fn.__qualname__}"


def kernels_in_use(model: Any) -> dict[str, Any]:
    config = getattr(model, "config", None)
    classes: set[str] = set()
    patched: set[str] = set()
    for module in model.modules():
        kind = type(module)
        if not kind.__module__.startswith(STOCK):
            classes.add(f"{kind.__module__}.{kind.__name__}")
        # A forward assigned on the instance (or Axolotl's apply_qkv/apply_o) replaces stock code.
        for name in ("forward", "apply_qkv", "apply_o"):
            origin = _origin(module.__dict__.get(name))
            if origin and not origin.startswith(STOCK):
                patched.add(origin)
    # The causal-LM module itself (PEFT wraps it): the one holding lm_head as a direct child.
    inner = next((m for m in model.modules() if "lm_head" in m._modules), model)
    top_forward = _origin(type(inner).forward)
    modeling = sys.modules.get(type(inner).__module__)
    rope = _origin(getattr(modeling, "apply_rotary_pos_emb", None)) if modeling else None
    return {
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "model_class": f"{type(inner).__module__}.{type(inner).__name__}",
        "model_forward": top_forward,
        "rotary_embedding": rope,
        "non_stock_modules": sorted(classes),
        "patched_forwards": sorted(patched),
    }
