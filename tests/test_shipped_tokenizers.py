"""The recipes' real tokenizers, converted from the files llama-models and mistral-common ship,
encode exactly as those packages' own tokenizer classes do: special-token ids, sentences (the
repo's sample abstracts, Greek letters, odd whitespace), and the chat prompt the recipe renders.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, SAMPLE, read_jsonl

# Texts the recipes really see plus the whitespace and Unicode corners of PubMed abstracts.
CORNERS = [
    "This is a test sentence.",
    "Puromycin aminonucleoside (PAN)-induced nephrosis: α-methyldopa 5 mg/kg, β-blockers.",
    "two  spaces, three   spaces\tand a tab\n\nand two newlines",
    "emoji 🧪, CJK 中文, dash – and minus − signs",
]


def sample_texts() -> list[str]:
    rows = read_jsonl(SAMPLE)
    return CORNERS + [r["prompt"] for r in rows[:6]] + [r["completion"] for r in rows[:6]]


@pytest.fixture(scope="module")
def llama3():
    pytest.importorskip("llama_models")
    from training.build_model import load_arch, make_tokenizer

    tokenizer, source = make_tokenizer(load_arch("llama-3.2-3b"), ["unused"])
    assert source["source"] == "shipped" and source["package"] == "llama-models"
    return tokenizer


@pytest.fixture(scope="module")
def mistral():
    pytest.importorskip("mistral_common")
    pytest.importorskip("sentencepiece")
    from training.build_model import load_arch, make_tokenizer

    tokenizer, source = make_tokenizer(load_arch("mistral-7b-v0.3"), ["unused"])
    assert source["source"] == "shipped" and source["package"] == "mistral-common"
    return tokenizer


def test_llama3_special_tokens_have_their_real_ids(llama3):
    assert len(llama3) == 128256
    expected = {
        "<|begin_of_text|>": 128000, "<|end_of_text|>": 128001,
        "<|finetune_right_pad_id|>": 128004, "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007, "<|eom_id|>": 128008, "<|eot_id|>": 128009,
        "<|python_tag|>": 128010,
    }  # fmt: skip
    assert {t: llama3.convert_tokens_to_ids(t) for t in expected} == expected
    assert (llama3.bos_token_id, llama3.eos_token_id, llama3.pad_token_id) == (
        128000,
        128009,
        128004,
    )
    # The package's own test sentence.
    assert llama3("This is a test sentence.")["input_ids"] == [
        128000, 2028, 374, 264, 1296, 11914, 13,
    ]  # fmt: skip


def test_llama3_encodes_as_the_package_tokenizer(llama3):
    from llama_models.llama3.tokenizer import Tokenizer

    reference = Tokenizer.get_instance()
    for text in sample_texts():
        assert llama3(text)["input_ids"] == reference.encode(text, bos=True, eos=False), text
        assert llama3.decode(llama3(text, add_special_tokens=False)["input_ids"]) == text


def test_llama3_chat_prompt_is_the_package_dialog_format(llama3):
    """axolotl's llama3 template (the recipe's chat_template) renders a [system, user] chat as
    Meta's own ChatFormat encodes it, generation header included."""
    from llama_models.datatypes import RawMessage
    from llama_models.llama3.chat_format import ChatFormat
    from llama_models.llama3.tokenizer import Tokenizer

    chat = ChatFormat(Tokenizer.get_instance())
    for row in read_jsonl(SAMPLE)[:3]:
        # Stripped: Meta's published Hugging Face template (and axolotl's) trims each message;
        # ChatFormat encodes it as given.
        system, user = "You extract entities.", row["prompt"].strip()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        ours = llama3.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        raw = [RawMessage(role=m["role"], content=m["content"]) for m in messages]
        assert list(ours["input_ids"]) == chat.encode_dialog_prompt(raw).tokens


def test_mistral_special_tokens_have_their_real_ids(mistral):
    assert len(mistral) == 32768
    expected = {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4, "[TOOL_CALLS]": 5}
    assert {t: mistral.convert_tokens_to_ids(t) for t in expected} == expected
    assert (mistral.bos_token_id, mistral.eos_token_id) == (1, 2)


def test_mistral_encodes_as_mistral_common(mistral):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    reference = MistralTokenizer.v3().instruct_tokenizer.tokenizer
    for text in sample_texts():
        assert mistral(text)["input_ids"] == reference.encode(text, bos=True, eos=False), text
    # The one known difference, as in transformers' own conversion of this model: a text that
    # *starts* with a space loses it (SentencePiece keeps "▁" + "▁word"). Our rows never start
    # with a space: every prompt opens with [INST].
    assert mistral(" x")["input_ids"] != reference.encode(" x", bos=True, eos=False)


def test_mistral_recipe_prompt_is_mistral_commons_chat_encoding(mistral):
    """The recipe's template puts the system text before the first user turn; Mistral's own
    encoder, given that same user text, produces the same ids."""
    from mistral_common.protocol.instruct.messages import UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    reference = MistralTokenizer.v3()
    template = yaml.safe_load((REPO / "recipes" / "mistral7b-qlora.yml").read_text())[
        "chat_template_jinja"
    ]
    for row in read_jsonl(SAMPLE)[:3]:
        system, user = "You extract entities.", row["prompt"]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        ours = mistral.apply_chat_template(
            messages, chat_template=template, add_generation_prompt=True, tokenize=True
        )
        request = ChatCompletionRequest(messages=[UserMessage(content=f"{system}\n\n{user}")])
        assert list(ours["input_ids"]) == reference.encode_chat_completion(request).tokens


def test_build_tokenizer_saves_the_real_one_and_reloads_identically(llama3, tmp_path):
    from transformers import AutoTokenizer

    from training.build_model import build_tokenizer

    build_tokenizer("llama-3.2-3b", tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in CORNERS:
        assert reloaded(text)["input_ids"] == llama3(text)["input_ids"]
    assert reloaded.pad_token_id == 128004 and reloaded.chat_template == llama3.chat_template


def test_families_without_shipped_files_fall_back_to_a_trained_tokenizer():
    from training.build_model import load_arch, make_tokenizer

    tokenizer, source = make_tokenizer(
        load_arch("qwen2.5-7b"), [r["prompt"] for r in read_jsonl(SAMPLE)], vocab_size=512
    )
    assert source["source"] == "trained" and len(tokenizer) <= 512
