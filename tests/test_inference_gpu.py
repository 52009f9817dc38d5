"""The fast engine on a GPU (skipped without CUDA): its CUDA-graph steps give the tokens of HF
`generate`, graphs are captured once per batch bucket and reused by the next call, and a peft
model with its adapter unmerged, in training mode, decodes as the merged one. fp32 with TF32 off,
so that the comparison with HF is exact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

NEW_TOKENS = 40
NEVER = 1000  # outside the test model's vocabulary: a stop id that never comes


class IdTokenizer:
    pad_token_id = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))


def decode(model, prompts, engine: str, stops: list[int]) -> tuple[list, dict]:
    from inference.decode import generate_greedy

    generations, stats = generate_greedy(
        model, IdTokenizer(), prompts, NEW_TOKENS, stops, engine=engine
    )
    return [(g.text, g.finish_reason, g.new_tokens) for g in generations], stats


@pytest.fixture(autouse=True)
def exact_matmuls():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def small_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
    )  # fmt: skip
    return LlamaForCausalLM(config).cuda().eval()


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 300, (40,), generator=generator).tolist()
    return [torch.randint(3, 1000, (n,), generator=generator).tolist() for n in lengths]


def stops_of(model, prompts) -> list[int]:
    """Stop ids that end some rows early and not others: the tokens the first two rows generate
    mid-answer (random weights on a GPU say which tokens those are)."""
    free, _ = decode(model, prompts[:2], "hf", [NEVER])
    return sorted({int(text.split()[NEW_TOKENS // 4]) for text, _, _ in free})


def test_cuda_graph_steps_give_the_hf_tokens_and_are_reused(prompts):
    from inference.fast_decode import release

    model = small_llama()
    stops = stops_of(model, prompts)
    expected, _ = decode(model, prompts, "hf", stops)
    assert {reason for _, reason, _ in expected} == {"stop", "length"}
    fast, stats = decode(model, prompts, "fast", stops)
    assert stats["graphs"] == "cuda graphs" and stats["graph_captures"] >= 1
    assert fast == expected
    again, stats = decode(model, prompts, "fast", stops)
    assert again == expected and stats["graph_captures"] == 0  # the first call's graphs
    release(model)


def test_unmerged_lora_in_training_mode_decodes_as_merged(prompts):
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=targets,
                        init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(small_llama(), config)
    peft_model.train()
    stops = stops_of(peft_model, prompts)
    peft_model.train()
    unmerged, stats = decode(peft_model, prompts, "fast", stops)
    assert peft_model.training
    assert stats["graphs"].startswith(("cuda graphs", "eager (CUDA graphs failed"))
    merged, _ = decode(peft_model.merge_and_unload().eval(), prompts, "fast", stops)
    assert unmerged == merged


def test_refilled_slots_give_the_same_tokens_and_training_keeps_no_state(prompts):
    """Eight rows in flight for 40 prompts (slots freed by stopped rows are refilled between
    graph replays): the tokens of all rows at once. keep_state=False (a training loop's
    evaluation) leaves no cache or graphs behind."""
    from inference.decode import generate_greedy
    from inference.fast_decode import _STATES, release

    model = small_llama()
    stops = stops_of(model, prompts)
    expected, _ = decode(model, prompts, "fast", stops)
    release(model)
    generations, stats = generate_greedy(
        model, IdTokenizer(), prompts, NEW_TOKENS, stops, batch_size=8, engine="fast",
        keep_state=False,
    )  # fmt: skip
    assert [(g.text, g.finish_reason, g.new_tokens) for g in generations] == expected
    assert stats["rows_in_flight"] == 8 and len(stats["admissions"]) > 5
    assert model not in _STATES
