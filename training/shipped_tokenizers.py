"""The recipes' real tokenizers, rebuilt from the files that PyPI packages ship.

No model can be downloaded where this project is tested, but two families' exact vocabularies
come inside Python packages:

* Llama-3 / 3.1 / 3.2: ``llama-models`` ships ``llama_models/llama3/tokenizer.model`` (tiktoken
  BPE ranks, 128,000 of them) and, in ``llama_models/llama3/tokenizer.py``, the split pattern and
  the 256 special tokens. Converted with transformers' own ``TikTokenConverter``.
* Mistral-7B-Instruct-v0.3: ``mistral-common`` ships its v3 SentencePiece model
  ``mistral_instruct_tokenizer_240323.model.v3`` (``MistralTokenizer.v3()``; 32,768 pieces, the
  control tokens ``[INST]`` ... among them). Converted into transformers' Llama (SentencePiece
  BPE, byte fallback) fast tokenizer the way its ``SentencePieceExtractor`` does.

An architecture file names its shipped tokenizer under ``tokenizer.shipped``; ``shipped_tokenizer``
returns None when the package is not installed (or the file names none), and the caller falls back
to a tokenizer trained on the data at hand. Both packages are test/benchmark dependencies only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any


def shipped_file(arch: dict[str, Any]) -> Path | None:
    """The tokenizer file the architecture's package ships, if that package is installed."""
    shipped = arch["tokenizer"].get("shipped")
    if not shipped:
        return None
    spec = importlib.util.find_spec(shipped["module"])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / shipped["file"]
    return path if path.is_file() else None


def shipped_source(arch: dict[str, Any], path: Path) -> dict[str, Any]:
    """Where a shipped tokenizer came from, for build records and benchmark results."""
    shipped = arch["tokenizer"]["shipped"]
    return {
        "source": "shipped",
        "package": shipped["package"],
        "package_version": importlib.metadata.version(shipped["package"]),
        "file": f"{shipped['module']}/{shipped['file']}",
        "format": shipped["format"],
    }


def _llama3_special_tokens(path: Path) -> dict[str, int]:
    """Special token -> id exactly as the package's own Tokenizer class assigns them."""
    from llama_models.llama3.tokenizer import Tokenizer

    return dict(Tokenizer(path).special_tokens)


def _from_tiktoken(path: Path, pattern: str, special_ids: dict[str, int]):
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(path), pattern=pattern).converted()
    specials = sorted(special_ids, key=special_ids.get)
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    for token, expected in special_ids.items():
        if backend.token_to_id(token) != expected:
            raise ValueError(f"{path}: {token} got id {backend.token_to_id(token)}, not {expected}")
    return backend


def _llama3(path: Path):
    from llama_models.llama3.tokenizer import Tokenizer

    return _from_tiktoken(path, Tokenizer.pat_str, _llama3_special_tokens(path))


def _sentencepiece(path: Path):
    """SentencePiece BPE -> the Llama fast tokenizer (Metaspace, byte fallback), built as
    transformers' SentencePieceExtractor does it, reading the model through sentencepiece itself
    (not its protobuf bindings, whose generated code can disagree with the installed runtime)."""
    import sentencepiece
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    model = sentencepiece.SentencePieceProcessor(model_file=str(path))
    vocab = {model.id_to_piece(i): i for i in range(model.get_piece_size())}
    # Merge priority is the merged piece's score, as in SentencePiece's own BPE (the id order
    # alone splits "two  spaces" differently).
    scores = {piece: model.get_score(i) for piece, i in vocab.items()}
    # Control symbols (<s>, </s>, [INST], ...) are special tokens; user-defined ones are not.
    specials = [model.id_to_piece(i) for i in range(len(vocab)) if model.is_control(i)]
    tokenizer = LlamaTokenizer(
        vocab=vocab, merges=generate_merges(vocab, scores), add_prefix_space=True, legacy=False
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer.backend_tokenizer


BUILDERS = {"tiktoken": _llama3, "sentencepiece": _sentencepiece}


def shipped_backend(arch: dict[str, Any], path: Path):
    """The ``tokenizers.Tokenizer`` (vocabulary, merges, pre-tokenizer, special tokens) of the
    architecture's shipped file; the caller adds BOS handling, template and named tokens."""
    return BUILDERS[arch["tokenizer"]["shipped"]["format"]](path)
