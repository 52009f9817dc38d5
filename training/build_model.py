"""Build a random-init model with a published architecture and its real (or a trained) tokenizer.

No weights can be downloaded where this project is tested, so tests, the demo and the GPU
benchmark train models we build here:

* ``models/architectures/<name>.json`` holds a published model's architecture config (hidden size,
  layers, heads, vocab, rope settings, ...) and its tokenizer family's facts (special tokens, chat
  template name, end-of-turn token). It is data, not code.
* The tokenizer is the family's real one where a PyPI package ships its files (Llama-3, Mistral
  v0.3: training/shipped_tokenizers.py); otherwise a byte-level BPE trained on the data at hand,
  with the family's special tokens first (ids 0..k-1). Either way it carries the family's chat
  template from axolotl, exactly what a recipe's ``chat_template:`` renders.
* The model has the architecture's real shapes, random weights (seeded) and the real vocab size
  (a trained tokenizer is smaller, so the tail of the embedding is never used): compute per token
  equals the real model's; with the real tokenizer the build differs from the real model only by
  its weights.

``build_tiny()`` is the tiny Llama the CPU recipe trains: trained on the repo's own sample data
only, so it is byte-identical on every machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from preprocessing.files import REPO, repo_relative, sha256_file
from training.tokenizer_files import complete_tokenizer_config

ARCH_DIR = REPO / "models" / "architectures"
BUILT_DIR = REPO / "models" / "built"
TINY_ARCH = ARCH_DIR / "tiny-llama.json"
TINY_OUT = BUILT_DIR / "tiny-llama"
SAMPLE_DATA = REPO / "data" / "sample" / "sample_instruct.jsonl"
SEED = 1234


class BuildError(ValueError):
    """Bad architecture file or tokenizer data; the message names the file (and line)."""


def load_arch(path: str | Path) -> dict[str, Any]:
    """Read an architecture file; a bare name means models/architectures/<name>.json."""
    path = Path(path)
    if not path.exists() and (ARCH_DIR / f"{path}.json").is_file():
        path = ARCH_DIR / f"{path}.json"
    try:
        arch = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in ARCH_DIR.glob("*.json")))
        raise BuildError(f"{path}: architecture file not found (known: {known})") from None
    except json.JSONDecodeError as err:
        raise BuildError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    for key in ("name", "config", "tokenizer"):
        if key not in arch:
            raise BuildError(f"{path}: missing key {key!r}")
    for key in ("model_type", "vocab_size"):
        if key not in arch["config"]:
            raise BuildError(f"{path}: config lacks {key!r}")
    arch["path"] = path.as_posix()
    return arch


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def corpus_texts(paths: Iterable[str | Path]) -> list[str]:
    """Every string in every JSONL row of ``paths`` (prompts, completions, chat messages alike)."""
    texts: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise BuildError(f"{path}: tokenizer training data not found")
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    texts.extend(_strings(json.loads(line)))
                except json.JSONDecodeError as err:
                    raise BuildError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
    if not texts:
        raise BuildError(f"no text to train a tokenizer on in {', '.join(map(str, paths))}")
    return texts


def _special_tokens(facts: dict[str, Any]) -> list[str]:
    named = [facts.get(key) for key in ("bos_token", "eos_token", "pad_token", "unk_token")]
    tokens = [t for t in [*named, *facts.get("extra_special_tokens", [])] if t]
    return list(dict.fromkeys(tokens))  # unique, order kept: ids are stable


def _trained_backend(arch: dict[str, Any], texts: list[str], vocab_size: int | None):
    """Byte-level BPE trained on ``texts``, the family's special tokens first (ids 0..k-1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    facts = arch["tokenizer"]
    vocab_size = vocab_size or facts.get("train_vocab_size") or arch["config"]["vocab_size"]
    vocab_size = min(vocab_size, arch["config"]["vocab_size"])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=_special_tokens(facts),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    # trim_offsets=False keeps character offsets exact: axolotl locates turns through them.
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    return bpe


def _wrap(arch: dict[str, Any], backend):
    """A transformers fast tokenizer around ``backend``: BOS added as the family adds it, the
    family's named special tokens, and the chat template the recipe trains with (axolotl's)."""
    from axolotl.utils.chat_templates import get_chat_template
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    facts = arch["tokenizer"]
    bos = facts.get("bos_token")
    if facts.get("add_bos_token") and bos:
        template = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, backend.token_to_id(bos))],
        )
        existing = backend.post_processor
        backend.post_processor = processors.Sequence([existing, template]) if existing else template
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=facts.get("eos_token"),
        pad_token=facts.get("pad_token"),
        unk_token=facts.get("unk_token"),
        extra_special_tokens=list(facts.get("extra_special_tokens", [])),
        model_max_length=arch["config"].get("max_position_embeddings", 2048),
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = get_chat_template(facts["chat_template"])
    return tokenizer


def train_tokenizer(arch: dict[str, Any], texts: list[str], vocab_size: int | None = None):
    """Byte-level BPE on ``texts`` with the family's special tokens and chat template."""
    return _wrap(arch, _trained_backend(arch, texts, vocab_size))


def make_tokenizer(
    arch: dict[str, Any], texts: list[str], vocab_size: int | None = None, trained: bool = False
) -> tuple[Any, dict[str, Any]]:
    """(tokenizer, where it came from): the family's real tokenizer when its package is
    installed (training/shipped_tokenizers.py), else one trained on ``texts``."""
    from training.shipped_tokenizers import shipped_backend, shipped_file, shipped_source

    path = None if trained or vocab_size else shipped_file(arch)
    if path is not None:
        return _wrap(arch, shipped_backend(arch, path)), shipped_source(arch, path)
    source = {"source": "trained", "note": "byte-level BPE trained on the tokenizer data"}
    return train_tokenizer(arch, texts, vocab_size), source


def build_model(arch: dict[str, Any], tokenizer, seed: int = SEED, device: str | None = None):
    """Random-init model with the architecture's real shapes; token ids from ``tokenizer``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    values = dict(arch["config"])
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    if len(tokenizer) > values["vocab_size"]:
        raise BuildError(
            f"{arch['name']}: tokenizer has {len(tokenizer)} tokens, more than the model's "
            f"vocab_size {values['vocab_size']}"
        )
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = AutoConfig.for_model(model_type, **values, **ids)
    dtype = getattr(torch, arch.get("dtype", "bfloat16"))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    # Allocated directly in the target dtype on the target device: a 7B model in bf16 needs
    # ~15 GB once, never a float32 copy.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _data_record(path: Path) -> dict[str, str]:
    """Path (repo-relative where possible, so the record is the same on every machine) + hash."""
    return {"path": repo_relative(path), "sha256": sha256_file(path)}


def build(
    arch_path: str | Path,
    out: str | Path | None = None,
    data: Iterable[str | Path] | None = None,
    vocab_size: int | None = None,
    seed: int = SEED,
    device: str | None = None,
    trained_tokenizer: bool = False,
) -> Path:
    """Build model + tokenizer into ``out`` (default models/built/<name>); returns ``out``.
    The tokenizer is the family's real one where its package is installed, unless
    ``trained_tokenizer`` or ``vocab_size`` asks for one trained on ``data``."""
    arch = load_arch(arch_path)
    out = Path(out) if out else BUILT_DIR / arch["name"]
    data = [Path(p) for p in (data or [SAMPLE_DATA])]
    texts = corpus_texts(data)
    tokenizer, tokenizer_source = make_tokenizer(arch, texts, vocab_size, trained_tokenizer)
    model = build_model(arch, tokenizer, seed=seed, device=device)

    # Written next to ``out`` and moved into place at the end: a reader (another test session,
    # a training) never sees half a model.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    complete_tokenizer_config(staging)
    n_chars = sum(len(t) for t in texts)
    n_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    record = {
        "architecture": arch["name"],
        "architecture_sha256": sha256_file(Path(arch["path"])),
        "hf_id": arch.get("hf_id"),
        "random_init": True,
        "seed": seed,
        "dtype": arch.get("dtype", "bfloat16"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_vocab_size": arch["config"]["vocab_size"],
        "tokenizer_vocab_size": len(tokenizer),
        "chat_template": arch["tokenizer"]["chat_template"],
        "tokenizer": tokenizer_source,
        "tokenizer_data": [_data_record(p) for p in data],  # trained on (or measured on)
        "chars_per_token": round(n_chars / max(n_tokens, 1), 3),
        "note": "random weights: compute per token equals the real model's, outputs are noise",
    }
    (staging / "build.json").write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def build_tokenizer(
    arch_path: str | Path,
    out: str | Path,
    data: Iterable[str | Path] | None = None,
    vocab_size: int | None = None,
    trained_tokenizer: bool = False,
) -> Path:
    """Only the tokenizer of ``build`` (seconds): for checking a family's template and masks."""
    arch = load_arch(arch_path)
    texts = corpus_texts(data or [SAMPLE_DATA])
    tokenizer, _ = make_tokenizer(arch, texts, vocab_size, trained_tokenizer)
    tokenizer.save_pretrained(out)
    complete_tokenizer_config(out)
    return Path(out)


def build_tiny(out: str | Path = TINY_OUT, force: bool = False) -> Path:
    """The tiny Llama of the CPU recipe; reused when already built from the same sample data."""
    out = Path(out)
    record = out / "build.json"
    if not force and record.is_file() and (out / "model.safetensors").is_file():
        built = json.loads(record.read_text("utf-8"))
        same_data = SAMPLE_DATA.is_file() and built.get("tokenizer_data") == [
            _data_record(SAMPLE_DATA)
        ]
        if same_data and built.get("architecture_sha256") == sha256_file(TINY_ARCH):
            return out
    return build(TINY_ARCH, out, data=[SAMPLE_DATA], seed=SEED, device="cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, metavar="JSON", help="architecture file or name")
    parser.add_argument("--out", type=Path, metavar="DIR", help="default models/built/<name>")
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="JSONL to train a tokenizer on / measure characters per token on "
        "(default: data/sample/sample_instruct.jsonl)",
    )
    parser.add_argument(
        "--vocab-size", type=int, help="train a tokenizer of this vocab (default: from the JSON)"
    )
    parser.add_argument(
        "--trained-tokenizer",
        action="store_true",
        help="train a tokenizer even where the family's real one is installed",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--device", help="where to initialise weights (default: cuda if present)")


def run(args: argparse.Namespace) -> int:
    try:
        out = build(
            args.arch, args.out, args.data, args.vocab_size, args.seed, args.device,
            trained_tokenizer=args.trained_tokenizer,
        )  # fmt: skip
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"random-init model + tokenizer: {out} (details: {out / 'build.json'})")
    return 0
