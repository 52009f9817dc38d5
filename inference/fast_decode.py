"""The "fast" engine: greedy decoding over the model's own modules (inference.fast_model) with a
preallocated KV cache, scheduled for a GPU.

- Rows are sorted longest prompt first and decoded in waves (as many rows as the KV cache of
  `longest prompt + max_new_tokens` tokens each lets fit in free GPU memory).
- Prefill: a wave's rows in chunks of at most PREFILL_TOKENS padded tokens, right-padded; logits
  only at each row's last token.
- Decode: one token per row per step over a fixed-shape batch ("bucket"); a finished row rides
  along until fewer than half the bucket's rows are still going, then the survivors' cache rows
  move to the front and the next smaller bucket (a power of two) takes over.
- On a GPU each bucket's step is captured once as a CUDA graph (per bucket and cache length, per
  process, reused across calls) and replayed; where capture fails (some quantized or adapter
  modules cannot be captured) or its first replay differs from the eager step, steps run eagerly
  and the stats say so. On CPU every step runs eagerly, in fp32.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from inference.fast_model import Decoder, decode_step, decoder_of, prefill, rotary_tables

# Padded prompt tokens per prefill forward (GPU / CPU): bounds activation memory.
PREFILL_TOKENS = {"cuda": 32768, "cpu": 4096}
# Rows decoded together at most, unless batch_size says otherwise (on a GPU also what fits).
MAX_ROWS = {"cuda": 1024, "cpu": 64}
# Share of free GPU memory the KV cache may take; the rest: weights' temporaries, prefill
# activations, logits, graph pools.
KV_MEMORY_SHARE = 0.6
# Cache lengths are rounded up to this, so that calls of similar lengths share graphs.
LENGTH_STEP = 128


def bucket_for(rows: int) -> int:
    """The decode batch for `rows` rows: the next power of two, or (above 64 rows) the next
    multiple of 64 where that is smaller (300 rows: 320, not 512)."""
    power = 1 << max(0, rows - 1).bit_length()
    return min(power, -(-rows // 64) * 64) if rows > 64 else power


@dataclass
class EngineState:
    """What one model keeps between calls: its KV cache, static step buffers, CUDA graphs."""

    length: int
    capacity: int
    cache: list[tuple[Any, Any]]
    tokens: Any  # [capacity] the token each row feeds in next
    positions: Any  # [capacity] where it goes in
    next_tokens: Any  # [capacity] the step's output
    cos: Any
    sin: Any
    graphs: dict[int, Any] = field(default_factory=dict)
    graph_pool: Any = None
    graph_failure: str | None = None


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def release(model: Any) -> None:
    """Free the KV cache and graphs the engine keeps for `model`."""
    from inference.decode import causal_lm

    _STATES.pop(causal_lm(model), None)


def _state_for(lm: Any, decoder: Decoder, capacity: int, length: int, keep: bool) -> EngineState:
    import torch

    state = _STATES.get(lm)
    if state is not None and state.length == length and state.capacity >= capacity:
        return state
    _STATES.pop(lm, None)
    del state  # the old cache goes before the new one is allocated
    shape = (capacity, decoder.kv_heads, length, decoder.head_dim)

    def zeros(*size: int, dtype: Any = decoder.dtype) -> Any:
        return torch.zeros(size, dtype=dtype, device=decoder.device)

    cos, sin = rotary_tables(decoder, length)
    state = EngineState(
        length=length,
        capacity=capacity,
        cache=[(zeros(*shape), zeros(*shape)) for _ in decoder.layers],
        tokens=zeros(capacity, dtype=torch.long),
        positions=zeros(capacity, dtype=torch.long),
        next_tokens=zeros(capacity, dtype=torch.long),
        cos=cos,
        sin=sin,
    )
    if keep:
        _STATES[lm] = state
    return state


def _rows_per_wave(
    decoder: Decoder,
    rows: int,
    length: int,
    batch_size: int | None,
    held: int = 0,
    max_cache_gib: float | None = None,
) -> int:
    """Rows decoded together: at most `batch_size` (default MAX_ROWS), at most as many as
    `max_cache_gib` of KV cache holds, and on a GPU at most as many as the free memory (plus
    `held`, the bytes of the cache this model keeps) holds the KV cache of."""
    wanted = min(rows, batch_size or MAX_ROWS[decoder.device.type])
    per_token = 2 * len(decoder.layers) * decoder.kv_heads * decoder.head_dim
    per_token *= decoder.dtype.itemsize
    if max_cache_gib is not None:
        wanted = min(wanted, max(1, int(max_cache_gib * 2**30 / (per_token * length))))
    if decoder.device.type != "cuda":
        return wanted
    from inference.hf_rounds import free_gpu_bytes

    fits = int((free_gpu_bytes() + held) * KV_MEMORY_SHARE / (per_token * length))
    if fits < 1:
        raise MemoryError(f"not one row of {length} tokens fits in the free GPU memory")
    return min(wanted, fits)


def fast_generate(
    model: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[int],
    batch_size: int | None = None,
    progress: bool = False,
    keep_state: bool = True,
    max_cache_gib: float | None = None,
) -> tuple[list[list[int]], dict[str, Any]]:
    """(generated token ids per prompt, the stop token last where one came; stats)."""
    from tqdm import tqdm

    from inference.decode import causal_lm

    if not prompts:
        return [], {"prefill_seconds": 0.0, "decode_seconds": 0.0, "decode_steps": 0}
    if min(map(len, prompts)) < 1:
        raise ValueError("an empty prompt: every prompt needs at least one token")
    lm = causal_lm(model)
    decoder = decoder_of(lm)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    length = -(-(len(prompts[order[0]]) + max_new_tokens) // LENGTH_STEP) * LENGTH_STEP
    kept = _STATES.get(lm)
    held = sum(2 * k.numel() * k.element_size() for k, _ in kept.cache) if kept else 0
    wave_rows = _rows_per_wave(decoder, len(prompts), length, batch_size, held, max_cache_gib)
    del kept
    use_graphs = decoder.device.type == "cuda"
    state = _state_for(lm, decoder, bucket_for(wave_rows), length, keep_state and use_graphs)
    run = _Run(decoder, state, set(stops), max_new_tokens, use_graphs)
    results: list[list[int]] = [[] for _ in prompts]
    with tqdm(total=len(prompts), desc="generate", unit="row", disable=not progress) as bar:
        for start in range(0, len(order), wave_rows):
            wave = order[start : start + wave_rows]
            for row, tokens in zip(wave, run.wave([prompts[i] for i in wave], bar), strict=True):
                results[row] = tokens
    if not keep_state:
        _STATES.pop(lm, None)
    return results, run.stats(wave_rows)


class _Run:
    """One call's decoding: waves of prefill then steps, with its timings."""

    def __init__(self, decoder, state, stops, max_new_tokens, use_graphs) -> None:
        self.decoder, self.state, self.stops = decoder, state, stops
        self.max_new_tokens, self.use_graphs = max_new_tokens, use_graphs
        self.prefill_seconds = self.decode_seconds = 0.0
        self.steps = self.captures = 0
        self.waves: list[dict[str, Any]] = []

    def stats(self, wave_rows: int) -> dict[str, Any]:
        if not self.use_graphs:
            graphs = "eager (cpu)"
        elif self.state.graph_failure:
            graphs = f"eager (CUDA graphs failed: {self.state.graph_failure})"
        else:
            graphs = "cuda graphs"
        return {
            "prefill_seconds": round(self.prefill_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "decode_steps": self.steps,
            "rows_per_wave": wave_rows,
            "cache_length": self.state.length,
            "waves": self.waves,
            "graphs": graphs,
            "graph_captures": self.captures,
        }

    def wave(self, prompts: list[list[int]], bar: Any) -> list[list[int]]:
        """Prefill then decode these rows (longest first) to the end; their tokens."""
        import torch

        started = time.perf_counter()
        first = self._prefill(prompts)
        state = self.state
        generated = [[t] for t in first]
        rows = len(prompts)
        state.tokens[:rows] = torch.tensor(first, device=self.decoder.device)
        state.positions[:rows] = torch.tensor([len(p) for p in prompts], device=self.decoder.device)
        self.prefill_seconds += time.perf_counter() - started
        started = time.perf_counter()
        bucket = bucket_for(rows)
        buckets, steps = [bucket], 0
        state.tokens[rows:bucket] = 0
        state.positions[rows:bucket] = 0  # filler slots: their own cache row, position 0 on
        slots = list(range(rows)) + [-1] * (bucket - rows)  # slot -> row of the wave; -1 filler
        going = {i for i in range(rows) if not self._done(generated[i])}
        bar.update(rows - len(going))
        while going:
            if len(going) < bucket // 2:
                bucket = self._compact(slots, going)
                buckets.append(bucket)
            produced = self._step(bucket)
            steps += 1
            for slot, row in enumerate(slots):
                if row in going:
                    generated[row].append(produced[slot])
                    if self._done(generated[row]):
                        going.discard(row)
                        bar.update(1)
        self.decode_seconds += time.perf_counter() - started
        self.steps += steps
        self.waves.append({"rows": rows, "buckets": buckets, "decode_steps": steps})
        return generated

    def _done(self, tokens: list[int]) -> bool:
        return tokens[-1] in self.stops or len(tokens) >= self.max_new_tokens

    def _prefill(self, prompts: list[list[int]]) -> list[int]:
        """First generated token of each row, its prompt's K/V in the cache rows 0..len-1."""
        import torch

        budget = PREFILL_TOKENS[self.decoder.device.type]
        first: list[int] = []
        start = 0
        while start < len(prompts):
            width = len(prompts[start])  # the longest of the chunk: rows come longest first
            end = min(len(prompts), start + max(1, budget // width))
            chunk = prompts[start:end]
            ids = torch.tensor(
                [p + [0] * (width - len(p)) for p in chunk], device=self.decoder.device
            )
            lengths = torch.tensor([len(p) for p in chunk], device=self.decoder.device)
            tokens = prefill(
                self.decoder, self.state.cache, slice(start, end), ids, lengths,
                self.state.cos, self.state.sin,
            )  # fmt: skip
            first += tokens.tolist()
            start = end
        return first

    def _compact(self, slots: list[int], going: set[int]) -> int:
        """Move the rows still going to the front slots; the new (smaller) bucket."""
        import torch

        state = self.state
        keep = [slot for slot, row in enumerate(slots) if row in going]
        index = torch.tensor(keep, device=self.decoder.device)
        count = len(keep)
        for k_cache, v_cache in state.cache:
            k_cache[:count] = k_cache.index_select(0, index)
            v_cache[:count] = v_cache.index_select(0, index)
        for buffer in (state.tokens, state.positions):
            buffer[:count] = buffer.index_select(0, index)
        bucket = bucket_for(count)
        state.tokens[count:bucket] = 0
        state.positions[count:bucket] = 0  # fillers: their own row, position 0 on
        slots[:] = [slots[s] for s in keep] + [-1] * (bucket - count)
        return bucket

    def _eager_step(self, bucket: int) -> None:
        """The step on buffers: next tokens out, then they become the inputs, positions + 1."""
        state = self.state
        tokens, positions = state.tokens[:bucket], state.positions[:bucket]
        out = decode_step(self.decoder, state.cache, tokens, positions, state.cos, state.sin)
        state.next_tokens[:bucket] = out
        tokens.copy_(out)
        positions.add_(1)

    def _step(self, bucket: int) -> list[int]:
        state = self.state
        if self.use_graphs and state.graph_failure is None:
            graph = state.graphs.get(bucket)
            if graph is None:
                graph = self._capture(bucket)
            if graph is not None:
                graph.replay()
                return state.next_tokens[:bucket].tolist()
        self._eager_step(bucket)
        return state.next_tokens[:bucket].tolist()

    def _capture(self, bucket: int) -> Any:
        """A CUDA graph of this bucket's step, checked against the eager step it replaces; None
        (and graphs off for this model) where that fails."""
        import torch

        state = self.state
        saved = state.tokens[:bucket].clone(), state.positions[:bucket].clone()

        def restore() -> None:
            state.tokens[:bucket], state.positions[:bucket] = saved

        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: kernels chosen, workspaces allocated
                    restore()
                    self._eager_step(bucket)
            torch.cuda.current_stream().wait_stream(stream)
            expected = state.next_tokens[:bucket].clone()
            restore()
            state.graph_pool = state.graph_pool or torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=state.graph_pool):
                self._eager_step(bucket)
            restore()
            graph.replay()
            if not torch.equal(state.next_tokens[:bucket], expected):
                raise RuntimeError("the graph's step differs from the eager step")
        except Exception as error:  # noqa: BLE001 - any failure: decode eagerly, say why
            torch.cuda.synchronize()
            state.graph_failure = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            state.graphs.clear()
            restore()
            return None
        restore()  # the check's replay is redone by the caller, from the same inputs
        self.captures += 1
        state.graphs[bucket] = graph
        return graph
