"""The benchmark document's training and eval sections: seed vs ours, every recipe, scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.table_format import (
    as_minutes,
    decoding_rounds,
    kernel_summary,
    load_result,
    md_table,
    met,
    model_summary,
    not_run,
    num,
    ours_seconds,
    pct,
    section,
    step_counts,
    times,
)

# The training target: 3 epochs in <= 4 min on one H100, i.e. >= 35 % of the bf16 matmul rate.
MATMUL_SHARE_TARGET = 0.35


def _train_rows(data: dict[str, Any]) -> list[list[str]]:
    """Seed vs ours, one measure per row."""
    seed, ours = data["seed"], data["ours"]
    s, o = seed["timing"], ours["timing"]
    ratios = data.get("ratios_ours_over_seed", {})
    util = data.get("matmul_utilisation", {})
    config = ours.get("config", {})
    return [
        ["real (non-pad) tokens/s", num(s["real_tokens_per_s"]), num(o["real_tokens_per_s"]),
         times(ratios.get("real_tokens_per_s"))],
        ["examples/s", num(s["examples_per_step"] / s["seconds_per_step"], 2),
         num(o["examples_per_step"] / o["seconds_per_step"], 2),
         times(ratios.get("examples_per_s"))],
        ["seconds per optimizer step", num(s["seconds_per_step"], 3),
         num(o["seconds_per_step"], 3), ""],
        ["examples per optimizer step", num(s["examples_per_step"]),
         num(o["examples_per_step"]), ""],
        ["padding share of token slots", pct(s["padding_fraction"]),
         pct(o["padding_fraction"]), ""],
        ["peak GPU memory allocated", num(s.get("peak_memory_gib"), 2, " GiB"),
         num(o.get("peak_memory_gib"), 2, " GiB"), times(ratios.get("peak_memory"))],
        [f"projected {s['epochs']} epochs ({num(s['epoch_real_tokens'], 0)} / "
         f"{num(o['epoch_real_tokens'], 0)} tokens per epoch)",
         as_minutes(s["projected_seconds"]), as_minutes(o["projected_seconds"]),
         times(ratios.get("projected_seconds"))],
        ["share of measured bf16 matmul rate (6·N·tokens)", pct(util.get("seed")),
         pct(util.get("ours")), ""],
        ["optimizer steps (warm-up + timed)", step_counts(seed), step_counts(ours), ""],
        ["precision, quantisation", f"{seed['precision']}, {seed['quantization']}",
         f"{'bf16' if config.get('bf16') else 'fp16' if config.get('fp16') else 'fp32'}, "
         f"{'4-bit' if config.get('load_in_4bit') else 'no 4-bit'}", ""],
        ["packing, sequence length", f"no, {seed['settings']['max_length']} max",
         f"{'yes' if config.get('sample_packing') else 'no'}, {config.get('sequence_len')}", ""],
        ["fields fed to the model (no attention_mask: varlen attention over packed rows)",
         ", ".join(s.get("batch_keys") or []) or "–", ", ".join(o.get("batch_keys") or []) or "–",
         ""],
        ["attention", num(seed["kernels"].get("attn_implementation")),
         num(ours["kernels"].get("attn_implementation")), ""],
        ["non-stock modules and kernels", kernel_summary(seed["kernels"]),
         kernel_summary(ours["kernels"]), ""],
    ]  # fmt: skip


def _train_targets(data: dict[str, Any]) -> list[str]:
    """The training targets, each met or not."""
    o = data["ours"]["timing"]
    ratios = data.get("ratios_ours_over_seed", {})
    util = data.get("matmul_utilisation", {})
    targets = data.get("targets", {})
    return [
        f"- ≥ {targets.get('speedup_at_least')}× the seed's real tokens/s: "
        f"{met(targets.get('speedup_met'))} ({times(ratios.get('real_tokens_per_s'))})",
        f"- peak memory not above the seed's: {met(targets.get('peak_memory_not_above_seed'))}",
        f"- 3 epochs ≤ {num(targets.get('three_epochs_at_most_s'), 0)} s: "
        f"{met(targets.get('three_epochs_met'))} ({as_minutes(o['projected_seconds'])})",
        f"- ≥ {pct(MATMUL_SHARE_TARGET)} of the measured bf16 matmul rate: "
        f"{met(util['ours'] >= MATMUL_SHARE_TARGET if util.get('ours') else None)} "
        f"({pct(util.get('ours'))})",
    ]


def train_section(path: Path) -> str:
    data = load_result(path)
    if data is None:
        return not_run("Training: seed script vs our recipe", "train")
    seed, ours = data["seed"], data["ours"]
    s, o = seed["timing"], ours["timing"]
    head = [
        "",
        "seed `train.py` (bench/seed_baseline.py)",
        f"ours (`{ours['recipe']}`)",
        "ours / seed",
    ]
    rows = _train_rows(data)
    target_lines = _train_targets(data)
    deviations = "".join(f"\n- {d}" for d in seed.get("deviations", []))
    interruptions = o.get("interruptions") or s.get("interruptions")
    return section(
        "Training: seed script vs our recipe",
        path,
        data,
        f"Measured bf16 matmul rate: {num(data.get('matmul_bf16_tflops'))} TFLOP/s. "
        f"Training rows: {data.get('data', {}).get('train_rows')}.",
        md_table(head, rows),
        "Targets:\n\n" + "\n".join(target_lines),
        f"Seed script deviations from the original:{deviations}" if deviations else "",
        f"**Timed window interrupted by:** {', '.join(interruptions)}" if interruptions else "",
    )


def eval_section(path: Path) -> str:
    data = load_result(path)
    if data is None:
        return not_run("Eval: seed loop vs our batched eval", "eval")
    seed, ours = data["seed"], data["ours"]
    st, ot = seed["timing"], ours["timing"]
    rows_n = data["split_rows"]

    def split(seconds: float, projected: bool) -> str:
        return f"{num(seconds)} s" + (" (projected)" if projected else "")

    head = ["", "seed loop (bench/seed_eval.py)", "ours (`eval generate`)", "ours / seed"]
    rows = [
        ["decoding", "sampling, temperature 0.1, one row at a time",
         f"greedy, {engine_line(ours)}", ""],
        ["rows generated", f"{seed['rows_generated']} of {seed['rows_in_split']}",
         f"{ours['rows_evaluated']} of {ours['rows_in_split']}", ""],
        ["max_new_tokens (rows that hit it)",
         f"{seed['max_new_tokens']} ({seed['hit_max_new_tokens']})",
         f"{ours['max_new_tokens']} ({ours['hit_max_new_tokens']})", ""],
        [f"whole split ({rows_n} rows), model loading included",
         split(data["seed_split_seconds"], data.get("seed_split_projected")),
         split(data["ours_split_seconds"], data.get("ours_split_projected")),
         times(data.get("speedup"))],
        ["rows/s over the split", num(rows_n / data["seed_split_seconds"], 2),
         num(rows_n / data["ours_split_seconds"], 2), ""],
        ["generated tokens/s (measured rows)", num(st["tokens_per_second"]),
         num(ot["tokens_per_second"]), ""],
        ["seconds measured", f"{num(st['seconds'])} generating + {num(st['load_seconds'])} "
         "loading", ours_seconds(ot), ""],
        ["our command, start to exit", "", f"{num(ours.get('command_seconds'))} s", ""],
    ]  # fmt: skip
    targets = data.get("targets", {})
    target_lines = [
        f"- `make eval` from typing to exit ≤ {num(targets.get('command_at_most_s'), 0)} s: "
        f"{met(targets.get('command_met'))}",
        f"- decoding ≥ {num(targets.get('decode_tokens_per_s_at_least'), 0)} generated tokens/s: "
        f"{met(targets.get('decode_met'))}",
        f"- ≥ {targets.get('speedup_at_least')}× the seed loop: {met(targets.get('speedup_met'))}",
    ]
    reused = (
        "Our side is the `eval generate` result already in the run (same device, rows and "
        "token budget), reused rather than generated twice."
    )
    return section(
        "Eval: seed loop vs our batched eval",
        path,
        data,
        md_table(head, rows),
        data.get("note", ""),
        reused if data.get("ours_reused") else "",
        "Targets:\n\n" + "\n".join(target_lines),
        model_line=model_summary(data.get("model")) + f" Run: `{data.get('run')}`.",
    )


def engine_line(ours: dict[str, Any]) -> str:
    """How our side decoded: the fast engine's batch and graphs, or HF generate's rounds."""
    engine = ours.get("engine") if isinstance(ours.get("engine"), dict) else {}
    if engine.get("engine") == "fast":
        # Results from before continuous batching say rows_per_wave and waves.
        rows = engine.get("rows_in_flight") or engine.get("rows_per_wave")
        prefills = len(engine.get("admissions") or engine.get("waves") or [])
        return (
            f"fast engine ({engine.get('graphs')}; {rows} rows in flight, {prefills} prefill(s) "
            f"{num(engine.get('prefill_seconds'))} s, {engine.get('decode_steps')} decode steps)"
        )
    return f"{ours.get('backend')}, {decoding_rounds(ours)}"


def total_steps(train: dict[str, Any]) -> int | None:
    records = train.get("rank_records") or []
    if not records:
        return None
    raw = records[0]["raw"]
    return raw["warmup_steps"] + raw["steps"]


def _recipe_row(path: Path, data: dict[str, Any]) -> list[str]:
    """One recipe's row: result, model, steps, speed, memory, settings, its eval."""
    train = data.get("train") or {}
    timing = train.get("timing") or {}
    config = train.get("config") or {}
    ev = data.get("eval") or {}
    model = data.get("model") or {}
    return [
        f"`{data.get('recipe')}`" + (" (smoke)" if data.get("smoke") else ""),
        "ran" if data.get("success") else f"**failed**: {data.get('error', '?')[:120]}",
        model.get("architecture_of") or model.get("path_or_id") or "–",
        num(total_steps(train), 0),
        num(timing.get("seconds_per_step"), 3),
        num(timing.get("real_tokens_per_s")),
        num(timing.get("peak_memory_gib"), 2),
        num((train.get("kernels") or {}).get("attn_implementation")),
        "yes" if config.get("sample_packing") else ("no" if config else "–"),
        num(config.get("optimizer")),
        num(ev.get("rows_evaluated"), 0),
        num((ev.get("timing") or {}).get("seconds")),
        data.get("device", "–"),
        f"`{path.name}`",
    ]


def recipes_section(paths: list[Path]) -> str:
    title = "## Every GPU recipe: training steps and eval on the GPU"
    if not paths:
        return f"{title}\n\nNot run yet (`python -m bench recipes`)."
    head = [
        "recipe",
        "result",
        "model",
        "steps",
        "s/step",
        "real tokens/s",
        "peak GiB",
        "attention",
        "packing",
        "optimizer",
        "eval rows",
        "eval s",
        "device",
        "file",
    ]
    rows, details = [], []
    for path in paths:
        data = load_result(path) or {}
        train = data.get("train") or {}
        rows.append(_recipe_row(path, data))
        if train:
            details.append(f"- `{data.get('recipe')}`: {kernel_summary(train.get('kernels'))}")
    commands = [c for p in paths for c in (load_result(p) or {}).get("commands", [])]
    return "\n\n".join(
        p
        for p in [
            title,
            "Random-init weights with each base model's architecture; steps include warm-up. Eval "
            "generates the first rows of the test split (all of it where the table says 300).",
            md_table(head, rows),
            "Non-stock modules and kernels seen in each trained model:\n\n" + "\n".join(details)
            if details
            else "",
            "Commands run:\n\n```\n" + "\n".join(commands) + "\n```" if commands else "",
        ]
        if p
    )


def scaling_section(path: Path) -> str:
    data = load_result(path)
    if data is None:
        return not_run("Several GPUs", "scaling")
    head = ["GPUs (strategy)", "real tokens/s", "s/step", "examples/step", "peak GiB per GPU",
            "× 1 GPU"]  # fmt: skip
    speedups = data.get("speedup_by_strategy") or {}
    rows = [
        [
            n,
            num(r["timing"]["real_tokens_per_s"]),
            num(r["timing"]["seconds_per_step"], 3),
            num(r["timing"]["examples_per_step"]),
            num(r["timing"].get("peak_memory_gib"), 2),
            times(speedups.get(n)) if n != "1" else "1.00×",
        ]
        for n, r in data["runs"].items()
    ]
    targets = data.get("targets", {})
    return section(
        "Several GPUs",
        path,
        data,
        md_table(head, rows),
        f"Best: {data.get('best_strategy')}, {data['gpus']} GPUs at {times(data.get('speedup'))} "
        f"one GPU's real tokens/s (efficiency {pct(data.get('efficiency'))}). Target ≥ "
        f"{targets.get('speedup_at_least')}×: {met(targets.get('speedup_met'))}. "
        f"{data.get('note', '')}",
    )
