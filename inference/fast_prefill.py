"""The fast engine's prefill of the rows it admits: their common prefix once, then each row's
own tokens, in chunks.

Prompts of one model share their start: the chat template's header and the system prompt, and
for the three prompts of one abstract nothing more (each task's instruction comes first); a
service's short abstracts are mostly that prefix (74 of ~110 tokens in the tests). The common
prefix of the rows admitted together is run once, its K/V copied into every row's cache, and
then each row's rest is run attending to it (inference.fast_model.prefill with an offset): the
same attention as one pass over the whole prompt, fewer tokens through the model.
"""

from __future__ import annotations

import os
from typing import Any

from inference.fast_model import Decoder, prefill

# A shorter common prefix is not worth a forward pass (and its copies) of its own.
MIN_SHARED_TOKENS = 16


def shared_prefix(prompts: list[list[int]]) -> int:
    """Tokens at the start of every prompt that are worth prefilling once: 0 for one row, or
    when fewer than MIN_SHARED_TOKENS; each row keeps at least its last token (its logits give
    the row's first answer token)."""
    if len(prompts) < 2:
        return 0
    shared = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
    return shared if shared >= MIN_SHARED_TOKENS else 0


def prefill_rows(
    decoder: Decoder, state: Any, prompts: list[list[int]], slots: list[int], budget: int
) -> list[int]:
    """First generated token of each row; its prompt's K/V in its slot's cache row at positions
    0..len-1. Rows come longest first; chunks of at most `budget` padded tokens."""
    import torch

    device = decoder.device
    shared = shared_prefix(prompts)
    if shared:
        head = torch.tensor([prompts[0][:shared]], device=device)
        first_row = slice(slots[0], slots[0] + 1)
        prefill(decoder, state.cache, first_row, head, torch.tensor([shared], device=device),
                state.cos, state.sin)  # fmt: skip
        others = torch.tensor(slots[1:], dtype=torch.long, device=device)
        for k_cache, v_cache in state.cache:
            k_cache[others, :, :shared] = k_cache[first_row, :, :shared]
            v_cache[others, :, :shared] = v_cache[first_row, :, :shared]
    first: list[int] = []
    start = 0
    while start < len(prompts):
        width = len(prompts[start]) - shared  # the longest of the chunk: rows come longest first
        end = min(len(prompts), start + max(1, budget // (width + shared)))
        chunk = [p[shared:] for p in prompts[start:end]]
        ids = torch.tensor([p + [0] * (width - len(p)) for p in chunk], device=device)
        lengths = torch.tensor([len(p) for p in chunk], device=device)
        index = torch.tensor(slots[start:end], dtype=torch.long, device=device)
        tokens = prefill(
            decoder, state.cache, index, ids, lengths, state.cos, state.sin, offset=shared
        )
        first += tokens.tolist()
        start = end
    return first
