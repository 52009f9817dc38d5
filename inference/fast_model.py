"""The fast engine's forward passes, written over a decoder model's own modules.

Only the model's modules are called (embed_tokens; per layer input_layernorm, self_attn's
q/k/v/o projections or phi3's fused qkv_proj, post_attention_layernorm, mlp; the final norm;
lm_head; rotary_emb and the family's apply_rotary_pos_emb), so plain Linear, peft LoRA Linear
(adapter unmerged) and bitsandbytes Linear4bit layers all work unchanged. What is ours: the KV
cache (one preallocated [rows, kv_heads, L, head_dim] tensor per layer and for K and V, each row's
tokens from position 0, no padding in front) and the attention over it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Decoder:
    """A causal LM's parts, as the fast engine calls them."""

    embed: Any
    layers: list[Any]
    norm: Any
    lm_head: Any
    rotary: Any
    rotate: Any  # the family's apply_rotary_pos_emb(q, k, cos, sin)
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    fused_qkv: bool  # phi3: one qkv_proj
    dtype: Any
    device: Any

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads


def decoder_of(lm: Any) -> Decoder:
    """The Decoder view of a transformers *ForCausalLM (peft's LoRA layers stay inside it)."""
    config = lm.config.get_text_config()
    inner = lm.model
    attention = inner.layers[0].self_attn
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    embed = inner.embed_tokens
    return Decoder(
        embed=embed,
        layers=list(inner.layers),
        norm=inner.norm,
        lm_head=lm.lm_head,
        rotary=inner.rotary_emb,
        rotate=sys.modules[type(attention).__module__].apply_rotary_pos_emb,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        scale=getattr(attention, "scaling", head_dim**-0.5),
        fused_qkv=hasattr(attention, "qkv_proj"),
        dtype=embed.weight.dtype,
        device=embed.weight.device,
    )


def rotary_tables(decoder: Decoder, length: int) -> tuple[Any, Any]:
    """cos and sin of positions 0..length-1, [length, rotary_dim] each, from the model's own
    rotary embedding (each entry is the same product inv_freq * position that it computes per
    call, so the values are identical)."""
    import torch

    positions = torch.arange(length, device=decoder.device)[None]
    probe = torch.zeros(1, dtype=decoder.dtype, device=decoder.device)
    cos, sin = decoder.rotary(probe, positions)
    return cos[0], sin[0]


def _projections(decoder: Decoder, attention: Any, x: Any) -> tuple[Any, Any, Any]:
    """q, k, v of x [B, T, hidden] as [B, heads or kv_heads, T, head_dim]."""
    batch, length = x.shape[:2]
    d = decoder.head_dim
    if decoder.fused_qkv:
        qkv = attention.qkv_proj(x)
        q_size, kv_size = decoder.heads * d, decoder.kv_heads * d
        q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
    else:
        q, k, v = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
    q = q.view(batch, length, decoder.heads, d).transpose(1, 2)
    k = k.view(batch, length, decoder.kv_heads, d).transpose(1, 2)
    v = v.view(batch, length, decoder.kv_heads, d).transpose(1, 2)
    return q, k, v


def _mlp_block(layer: Any, hidden: Any) -> Any:
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


def prefill(
    decoder: Decoder, cache: list[tuple[Any, Any]], rows: Any, ids: Any, lengths: Any, cos, sin,
    offset: int = 0,
) -> Any:  # fmt: skip
    """Run right-padded prompts ids [B, T] (real lengths `lengths`), write their K/V into cache
    rows `rows` (a slice or B row indices) at positions offset..offset+T-1, and return the greedy
    next token of each row [B]. With an `offset`, positions 0..offset-1 of those rows already
    hold a prefix's K/V (inference.fast_prefill): every token attends to all of it.

    Causal attention over right padding: a real token never sees a padding token (they all come
    after it), and the padding's own K/V lie beyond the row's length, never read before the
    decode steps overwrite them. Logits only at each row's last real token.
    """
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    batch, length = ids.shape
    hidden = decoder.embed(ids)
    end = offset + length
    cos_t, sin_t = cos[offset:end][None], sin[offset:end][None]
    # Query i (position offset + i) sees keys 0..offset + i: causal, aligned to the lower right
    # (what flash / memory-efficient attention do natively; no mask is materialised on a GPU).
    visible = causal_lower_right(length, end) if offset else None
    for layer, (k_cache, v_cache) in zip(decoder.layers, cache, strict=True):
        attention = layer.self_attn
        q, k, v = _projections(decoder, attention, layer.input_layernorm(hidden))
        q, k = decoder.rotate(q, k, cos_t, sin_t)
        k_cache[rows, :, offset:end] = k
        v_cache[rows, :, offset:end] = v
        if offset:
            k, v = k_cache[rows, :, :end], v_cache[rows, :, :end]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=visible, is_causal=not offset,
            scale=decoder.scale, enable_gqa=decoder.group > 1,
        )  # fmt: skip
        out = out.transpose(1, 2).reshape(batch, length, decoder.heads * decoder.head_dim)
        hidden = _mlp_block(layer, hidden + attention.o_proj(out))
    last = hidden[torch.arange(batch, device=hidden.device), lengths - 1]
    return decoder.lm_head(decoder.norm(last)).argmax(dim=-1)


def decode_step(
    decoder: Decoder, cache: list[tuple[Any, Any]], tokens: Any, positions: Any, cos, sin
) -> Any:
    """One greedy step for rows 0..B-1 of the cache: token `tokens[b]` goes in at position
    `positions[b]` (its K/V written there), attends to positions 0..positions[b]; returns the
    next token of each row [B]. Shapes are fixed for a given B (CUDA-graph friendly).

    Grouped-query attention without repeating K/V: q is viewed as [B, kv_heads, group, head_dim]
    (the group's query heads as the "query length"), so each K/V head is read once.
    """
    import torch
    import torch.nn.functional as F

    batch = tokens.shape[0]
    hidden = decoder.embed(tokens)[:, None]  # [B, 1, hidden]
    cos_b, sin_b = cos[positions][:, None], sin[positions][:, None]  # [B, 1, rotary_dim]
    rows = torch.arange(batch, device=tokens.device)
    length = cache[0][0].shape[2]
    visible = torch.arange(length, device=tokens.device)[None] <= positions[:, None]
    mask = visible[:, None, None]  # [B, 1, 1, L]
    for layer, (k_cache, v_cache) in zip(decoder.layers, cache, strict=True):
        attention = layer.self_attn
        q, k, v = _projections(decoder, attention, layer.input_layernorm(hidden))
        q, k = decoder.rotate(q, k, cos_b, sin_b)
        k_cache[rows, :, positions] = k[:, :, 0]
        v_cache[rows, :, positions] = v[:, :, 0]
        grouped = q.reshape(batch, decoder.kv_heads, decoder.group, decoder.head_dim)
        out = F.scaled_dot_product_attention(
            grouped, k_cache[:batch], v_cache[:batch], attn_mask=mask, scale=decoder.scale
        )
        out = out.reshape(batch, 1, decoder.heads * decoder.head_dim)
        hidden = _mlp_block(layer, hidden + attention.o_proj(out))
    return decoder.lm_head(decoder.norm(hidden[:, 0])).argmax(dim=-1)
