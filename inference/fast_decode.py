"""The "fast" engine: greedy decoding over the model's own modules (inference.fast_model) with a
preallocated KV cache, scheduled for a GPU.

- Rows are sorted longest prompt first. As many are in flight as the KV cache of `longest
  prompt + max_new_tokens` tokens each lets fit (in free GPU memory, under `max_cache_gib`).
- Prefill (inference.fast_prefill): the admitted rows' common prefix once, then their own tokens
  in chunks of at most PREFILL_TOKENS padded tokens, right-padded, each into its own cache row
  ("slot"); logits only at each row's last token.
- Decode: one token per row per step over a fixed-shape batch ("bucket"). A row that stops frees
  its slot; once a quarter of the slots are free, the next waiting rows are prefilled into them
  (continuous batching: the batch stays full while rows wait, and one long answer does not hold
  the rest back). When no row waits, and fewer than half the bucket's rows are still going, the
  survivors' cache rows move to the front and the next smaller bucket takes over.
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

from inference.fast_model import Decoder, decode_step, decoder_of, rotary_tables
from inference.fast_prefill import prefill_rows

# Padded prompt tokens per prefill forward (GPU / CPU): bounds activation memory.
PREFILL_TOKENS = {"cuda": 32768, "cpu": 4096}
# ... and when decoding beside training, where activations compete with the training's memory.
PREFILL_TOKENS_BESIDE_TRAINING = 8192
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


def _memory_limit(
    decoder: Decoder, length: int, held: int = 0, max_cache_gib: float | None = None
) -> int | None:
    """Rows whose KV cache of `length` tokens fits: within `max_cache_gib`, and on a GPU within
    the free memory (plus `held`, the bytes of the cache this model keeps); None: no limit."""
    per_token = 2 * len(decoder.layers) * decoder.kv_heads * decoder.head_dim
    per_token *= decoder.dtype.itemsize
    limit = None
    if max_cache_gib is not None:
        limit = max(1, int(max_cache_gib * 2**30 / (per_token * length)))
    if decoder.device.type != "cuda":
        return limit
    from inference.hf_rounds import free_gpu_bytes

    fits = int((free_gpu_bytes() + held) * KV_MEMORY_SHARE / (per_token * length))
    if fits < 1:
        raise MemoryError(f"not one row of {length} tokens fits in the free GPU memory")
    return fits if limit is None else min(limit, fits)


def rows_in_flight(
    rows: int, batch_size: int | None, memory_limit: int | None, device: str
) -> tuple[int, int]:
    """(rows decoded together, the batch they decode in): all `rows`, at most `batch_size`
    (default MAX_ROWS) and `memory_limit`; on a GPU the batch is their bucket (few shapes, few
    graphs) or, where it would not fit, the rows that fit; on CPU (no graphs) just the rows."""
    wanted = min(rows, batch_size or MAX_ROWS[device], memory_limit or rows)
    bucket = bucket_for(wanted) if device == "cuda" else wanted
    return wanted, bucket if memory_limit is None else min(bucket, memory_limit)


def fast_generate(
    model: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[int],
    batch_size: int | None = None,
    progress: bool = False,
    keep_state: bool = True,
    max_cache_gib: float | None = None,
    on_done: Any = None,
) -> tuple[list[list[int]], dict[str, Any]]:
    """(generated token ids per prompt, the stop token last where one came; stats).
    on_done(index, tokens), if given, is called as each prompt's row finishes."""
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
    limit = _memory_limit(decoder, length, held, max_cache_gib)
    del kept
    capacity, bucket = rows_in_flight(len(prompts), batch_size, limit, decoder.device.type)
    use_graphs = decoder.device.type == "cuda"
    state = _state_for(lm, decoder, bucket, length, keep_state and use_graphs)
    run = _Run(decoder, state, set(stops), max_new_tokens, use_graphs, (capacity, bucket))
    if max_cache_gib is not None:  # beside training the prefill's activations stay small too
        run.prefill_tokens = min(run.prefill_tokens, PREFILL_TOKENS_BESIDE_TRAINING)
    if on_done is not None:
        run.on_done = lambda row, tokens: on_done(order[row], tokens)
    with tqdm(total=len(prompts), desc="generate", unit="row", disable=not progress) as bar:
        generated = run.decode([prompts[i] for i in order], bar)
    results: list[list[int]] = [[] for _ in prompts]
    for row, tokens in zip(order, generated, strict=True):
        results[row] = tokens
    if not keep_state:
        _STATES.pop(lm, None)
    return results, run.stats()


class _Run:
    """One call's decoding, with its timings. `capacity` rows are in flight: rows come in
    longest first; a row that stops frees its slot, and once a quarter of the slots are free
    the next rows are prefilled into them (so the batch stays full while rows are waiting);
    when none are waiting, the rows still going are compacted into smaller buckets."""

    def __init__(self, decoder, state, stops, max_new_tokens, use_graphs, shape) -> None:
        self.decoder, self.state, self.stops = decoder, state, stops
        self.max_new_tokens, self.use_graphs = max_new_tokens, use_graphs
        self.capacity, self.first_bucket = shape  # rows in flight, the batch they decode in
        self.prefill_tokens = PREFILL_TOKENS[decoder.device.type]
        self.on_done = lambda row, tokens: None  # called as a row finishes
        self.prefill_seconds = self.decode_seconds = 0.0
        self.steps = self.captures = 0
        self.admissions: list[int] = []  # rows prefilled into free slots, per prefill
        self.buckets: list[int] = []

    def stats(self) -> dict[str, Any]:
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
            "rows_in_flight": self.capacity,
            "cache_length": self.state.length,
            "admissions": self.admissions,
            "buckets": self.buckets,
            "graphs": graphs,
            "graph_captures": self.captures,
        }

    def decode(self, prompts: list[list[int]], bar: Any) -> list[list[int]]:
        """Every row (longest first) to its end; their tokens."""
        generated: list[list[int]] = [[] for _ in prompts]
        waiting = list(range(len(prompts)))[::-1]  # popped from the end: longest first
        bucket = self.first_bucket
        slots = [-1] * bucket  # slot -> row going there, or -1 (free; fed token 0 at position 0)
        self.buckets.append(bucket)
        self._reset(range(bucket))
        refill_at = max(1, self.capacity // 4)
        going = 0
        while True:
            if waiting and self.capacity - going >= min(refill_at, len(waiting)):
                free = [slot for slot in range(self.capacity) if slots[slot] < 0]
                going += self._admit(prompts, waiting, free, slots, generated, bar)
                continue
            if not going:
                return generated
            if not waiting and going < bucket // 2:
                bucket = self._compact(slots)
                self.buckets.append(bucket)
            going -= self._decode_step(bucket, slots, generated, bar)

    def _decode_step(self, bucket: int, slots: list[int], generated, bar) -> int:
        """One step of the bucket's rows; how many of them finished."""
        started = time.perf_counter()
        produced = self._step(bucket)
        self.steps += 1
        finished = []
        for slot in range(bucket):
            row = slots[slot]
            if row >= 0:
                generated[row].append(produced[slot])
                if self._done(generated[row]):
                    slots[slot] = -1
                    finished.append(slot)
                    self.on_done(row, generated[row])
        bar.update(len(finished))
        self._reset(finished)
        self.decode_seconds += time.perf_counter() - started
        return len(finished)

    def _reset(self, slots: Any) -> None:
        """Free slots feed token 0 at position 0 (their own cache row): harmless, in range."""
        import torch

        slots = list(slots)
        if not slots:  # most steps: no host-to-device copy at all
            return
        index = torch.tensor(slots, dtype=torch.long, device=self.decoder.device)
        self.state.tokens[index] = 0
        self.state.positions[index] = 0

    def _done(self, tokens: list[int]) -> bool:
        return tokens[-1] in self.stops or len(tokens) >= self.max_new_tokens

    def _admit(self, prompts, waiting, free, slots, generated, bar) -> int:
        """Prefill the next waiting rows into free slots; how many of them go on decoding."""
        import torch

        started = time.perf_counter()
        rows = [waiting.pop() for _ in range(min(len(free), len(waiting)))]
        taken = free[: len(rows)]
        first = prefill_rows(
            self.decoder, self.state, [prompts[row] for row in rows], taken, self.prefill_tokens
        )
        device = self.decoder.device
        index = torch.tensor(taken, dtype=torch.long, device=device)
        self.state.tokens[index] = torch.tensor(first, device=device)
        self.state.positions[index] = torch.tensor([len(prompts[r]) for r in rows], device=device)
        done = []
        for slot, row, token in zip(taken, rows, first, strict=True):
            generated[row].append(token)
            if self._done(generated[row]):
                done.append(slot)
                self.on_done(row, generated[row])
            else:
                slots[slot] = row
        bar.update(len(done))
        self._reset(done)
        self.admissions.append(len(rows))
        self.prefill_seconds += time.perf_counter() - started
        return len(rows) - len(done)

    def _compact(self, slots: list[int]) -> int:
        """Move the rows still going to the front slots; the new (smaller) bucket."""
        import torch

        state = self.state
        keep = [slot for slot, row in enumerate(slots) if row >= 0]
        index = torch.tensor(keep, device=self.decoder.device)
        count = len(keep)
        for k_cache, v_cache in state.cache:
            k_cache[:count] = k_cache.index_select(0, index)
            v_cache[:count] = v_cache.index_select(0, index)
        for buffer in (state.tokens, state.positions):
            buffer[:count] = buffer.index_select(0, index)
        bucket = bucket_for(count) if self.use_graphs else count
        slots[:] = [slots[s] for s in keep] + [-1] * (bucket - count)
        self._reset(range(count, bucket))
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
