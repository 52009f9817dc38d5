"""Every recipe passes Axolotl's own config validation, and its data settings train exactly the
assistant answer plus its end-of-turn token, through Axolotl's own tokenisation code.

No model is downloaded: GPU recipes are validated against an H100's capabilities, normalised
against their architecture's config.json (models/architectures/), and their tokenisation runs on
the model's real tokenizer where a package ships it (Llama-3, Mistral v0.3; test/dev extra),
else on a tokenizer of the family trained here (same special tokens and chat template).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, read_jsonl

RECIPES = sorted((REPO / "recipes").glob("*.yml"))
GPU_RECIPES = [p for p in RECIPES if p.stem != "tiny-cpu"]
# An H100 as the benchmarks used: bf16, sm_90, torch 2.11.
H100 = {"bf16": True, "fp8": True, "tf32": True, "n_gpu": 1, "compute_capability": "sm_90"}
H100_ENV = {"torch_version": "2.11.0"}
SEED_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def arch_for(recipe: Path) -> Path:
    """The architecture file whose hf_id is the recipe's base model (tiny-cpu: tiny-llama)."""
    base = yaml.safe_load(recipe.read_text())["base_model"]
    for path in (REPO / "models" / "architectures").glob("*.json"):
        arch = json.loads(path.read_text())
        if arch.get("hf_id") == base or base.endswith(f"/{arch['name']}"):
            return path
    raise AssertionError(f"{recipe.name}: no models/architectures/*.json for {base}")


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """recipe -> dir with the config.json of its architecture and a tokenizer of its family:
    what load_tokenizer and normalize_config read, without weights. Built once per recipe.
    (A session dir, not tmp_path: Axolotl treats any base_model path containing "mpt" as an MPT
    model, and pytest names tmp_path after the test, e.g. "..._prompt_...".)"""
    from transformers import AutoConfig

    from training.build_model import build_tokenizer, load_arch

    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(recipe: Path) -> Path:
        if recipe.stem not in built:
            arch = load_arch(arch_for(recipe))
            out = root / arch["name"]
            build_tokenizer(arch_for(recipe), out)  # the real one where installed
            values = dict(arch["config"])
            model_type = values.pop("model_type")
            values.pop("architectures", None)
            AutoConfig.for_model(model_type, **values).save_pretrained(out)
            built[recipe.stem] = out
        return built[recipe.stem]

    return get


def validated(recipe: Path, base_model: Path | None = None, capabilities=None, **changes):
    """The recipe through axolotl.utils.config: plugins, validate_config, normalize_config."""
    from axolotl.utils.config import (
        normalize_cfg_datasets,
        normalize_config,
        prepare_plugins,
        validate_config,
    )
    from axolotl.utils.dict import DictDefault

    raw = yaml.safe_load(recipe.read_text())
    raw.update(changes)
    if base_model:
        raw["base_model"] = str(base_model)
    cfg = DictDefault(raw)
    prepare_plugins(cfg)
    cfg = validate_config(cfg, capabilities=capabilities or H100, env_capabilities=H100_ENV)
    normalize_config(cfg)
    normalize_cfg_datasets(cfg)
    return cfg


def test_there_are_four_gpu_recipes_and_tiny_cpu():
    names = {p.stem for p in RECIPES}
    assert {"llama3b-qlora", "mistral7b-qlora", "phi3mini-qlora", "tiny-cpu"} <= names
    assert len(GPU_RECIPES) >= 4


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: p.stem)
def test_gpu_recipe_passes_axolotl_validation(recipe, family_dir):
    cfg = validated(recipe, family_dir(recipe))
    # The seed plan, as Axolotl understood it.
    assert cfg.adapter == "qlora" and cfg.load_in_4bit
    assert cfg.bnb_config_kwargs == {
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    }
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32, 0.05)
    assert (cfg.learning_rate, cfg.lr_scheduler, cfg.warmup_ratio) == (2e-4, "cosine", 0.03)
    assert (cfg.weight_decay, cfg.num_epochs) == (0.01, 3)
    # Not the seed's paged 8-bit AdamW: on LoRA-sized state the fused AdamW is one kernel launch
    # instead of a launch loop with a sync per tensor (measured in bench/results/profile.json).
    assert cfg.optimizer == "adamw_torch_fused"
    assert cfg.gradient_checkpointing and cfg.bf16 in ("auto", True, False)
    assert (cfg.eval_steps, cfg.save_steps, cfg.save_total_limit) == (100, 100, 3)
    # The final adapter is the best checkpoint by F1 on all validation rows (eval.training_f1).
    assert cfg.load_best_model_at_end and cfg.greater_is_better
    assert cfg.metric_for_best_model == "eval_normalized_micro_f1"
    assert "eval.training_f1.TrainingF1Plugin" in cfg.plugins
    assert cfg.eval_f1 is True and cfg.eval_f1_rows is None
    # Speed keys set explicitly and surviving validation.
    assert cfg.sample_packing is True and cfg.eval_sample_packing is True
    assert "training.axolotl_plugin.RunPlugin" in cfg.plugins
    assert cfg.attn_implementation == "sdpa" and cfg.sdpa_varlen is True
    assert cfg.liger_rope and cfg.liger_rms_norm and cfg.liger_fused_linear_cross_entropy
    raw = yaml.safe_load(recipe.read_text())
    for key in ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel", "lora_embedding_kernel"):
        assert key in raw, f"{recipe.name}: {key} must be set explicitly"
    # Effective batch ~16 examples: packs of 4096 tokens, ~400-500 tokens per row.
    rows_per_step = cfg.sequence_len * cfg.micro_batch_size * cfg.gradient_accumulation_steps
    assert 12 <= rows_per_step / 500 <= 21
    # Evaluation on the fixed validation file, never a random slice.
    assert not cfg.val_set_size
    assert [Path(d["path"]).name for d in cfg.test_datasets] == ["validation.jsonl"]
    assert [Path(d["path"]).name for d in cfg.datasets] == ["train.jsonl"]


def test_phi3_targets_its_fused_projections_and_keeps_kernels_off(family_dir):
    """Phi-3 has qkv_proj and gate_up_proj: the seed's seven names do not exist in it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    recipe = REPO / "recipes" / "phi3mini-qlora.yml"
    model_dir = family_dir(recipe)
    cfg = validated(recipe, model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    config.num_hidden_layers = 1
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModelForCausalLM.from_config(config)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(cfg.lora_target_modules) <= names
    assert not (SEED_TARGETS - {"o_proj", "down_proj"}) & names
    assert not (cfg.lora_qkv_kernel or cfg.lora_o_kernel or cfg.lora_mlp_kernel)


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: p.stem)
def test_gpu_recipe_on_two_gpus_uses_the_repo_zero2_config(recipe, family_dir, tmp_path):
    """What `make train GPUS=2` resolves to is still a valid Axolotl config."""
    from training.config import ZERO2, resolve_config
    from training.launch import axolotl_command

    resolved = resolve_config(
        yaml.safe_load(recipe.read_text()), tmp_path / "run", tmp_path / "processed", 2, None
    )
    assert (REPO / resolved["deepspeed"]).resolve() == ZERO2.resolve()
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(resolved))
    cfg = validated(path, family_dir(recipe), {**H100, "n_gpu": 2})
    assert cfg.deepspeed["zero_optimization"]["stage"] == 2
    command = axolotl_command(path, 2)
    launch = command.index("accelerate.commands.launch")
    assert command[launch + 1 : launch + 3] == ["--num_processes", "2"]
    assert command[-3:] == ["-m", "axolotl.cli.train", str(path)]


def test_tiny_cpu_passes_axolotl_load_cfg_on_this_machine(tiny_model, processed_sample, tmp_path):
    """tiny-cpu through axolotl.cli.config.load_cfg: the exact path `axolotl train` takes here
    (this machine's capabilities, the real tiny model)."""
    from axolotl.cli.config import load_cfg

    recipe = yaml.safe_load((REPO / "recipes" / "tiny-cpu.yml").read_text())
    for key, name in (("datasets", "train.jsonl"), ("test_datasets", "validation.jsonl")):
        recipe[key] = [{**d, "path": str(processed_sample / name)} for d in recipe[key]]
    recipe.update(base_model=str(tiny_model), output_dir=str(tmp_path / "out"))
    path = tmp_path / "tiny-cpu.yml"
    path.write_text(yaml.safe_dump(recipe))
    cfg = load_cfg(str(path))
    assert cfg.adapter == "lora" and not cfg.load_in_4bit and cfg.bf16 is False
    assert not any(cfg[k] for k in ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel")), (
        "Triton LoRA kernels are CUDA-only"
    )
    assert cfg.micro_batch_size * cfg.gradient_accumulation_steps == 16
    assert cfg.logging_steps == 1 and cfg.use_tensorboard


# Keys whose meaning is their name (the seed plan's hyperparameters, plain switches); every other
# top-level key of a recipe carries a comment on its line, the line above, or its nested lines.
OBVIOUS_KEYS = {
    "adapter", "datasets", "test_datasets", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_modules", "lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel",
    "lora_embedding_kernel", "liger_rope", "liger_rms_norm", "seed", "num_epochs",
    "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay",
    "gradient_accumulation_steps", "gradient_checkpointing", "eval_strategy", "eval_steps",
    "save_strategy", "save_total_limit", "metric_for_best_model", "greater_is_better",
    "logging_steps", "load_in_4bit", "micro_batch_size",
}  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_non_obvious_key_of_a_recipe_is_commented(recipe):
    lines = recipe.read_text().splitlines()
    assert lines[0].startswith("# "), "a header comment says what the recipe is"
    undocumented = []
    for i, line in enumerate(lines):
        if not line or line.startswith(("#", " ")):
            continue
        key = line.split(":", 1)[0]
        nested = []
        for following in lines[i + 1 :]:
            if not following.startswith(" "):
                break
            nested.append(following)
        documented = "#" in line or (i and lines[i - 1].startswith("#"))
        if not (documented or key in OBVIOUS_KEYS or any("#" in n for n in nested)):
            undocumented.append(key)
    assert not undocumented, f"{recipe.name}: comment {undocumented}"


# ---- label masks: Axolotl's chat_template strategy on each family's tokenizer ----------------


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_label_mask_trains_exactly_the_answer_and_its_end_of_turn_token(
    recipe, family_dir, processed_sample
):
    from axolotl.loaders.tokenizer import load_tokenizer
    from axolotl.prompt_strategies import load

    cfg = validated(recipe, family_dir(recipe))
    tokenizer = load_tokenizer(cfg)
    strategy = load("chat_template", tokenizer, cfg, cfg.datasets[0])
    eot = cfg.eot_tokens[0]
    for row in read_jsonl(processed_sample / "train.jsonl")[:6]:
        system, user, answer = (m["content"] for m in row["messages"])
        tokenised = strategy.tokenize_prompt(row)
        ids, labels = tokenised["input_ids"], tokenised["labels"]
        trained = [i for i, label in enumerate(labels) if label != -100]
        assert trained, f"{recipe.stem}: nothing trained"
        first, last = trained[0], trained[-1]
        assert trained == list(range(first, last + 1)), "one contiguous trained span"
        assert [labels[i] for i in trained] == [ids[i] for i in trained]
        # Exactly the answer and its end-of-turn token: no header, no user text, nothing after.
        assert tokenizer.decode(ids[first : last + 1]).lstrip() == answer.strip() + eot
        assert ids[last] == tokenizer.convert_tokens_to_ids(eot)
        # The system prompt and the user's text are in the input (whatever the template does
        # with the system role), untrained.
        prompt_text = tokenizer.decode(ids[:first])
        assert system in prompt_text and user.strip() in prompt_text


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_generation_prompt_is_what_training_saw(recipe, family_dir, processed_sample):
    """Eval renders messages[:-1] with add_generation_prompt=True on the run's tokenizer: that
    must be the untrained prefix of the training row (up to the space Mistral's template puts
    in front of an answer)."""
    from axolotl.loaders.tokenizer import load_tokenizer
    from axolotl.prompt_strategies import load

    cfg = validated(recipe, family_dir(recipe))
    tokenizer = load_tokenizer(cfg)
    strategy = load("chat_template", tokenizer, cfg, cfg.datasets[0])
    for row in read_jsonl(processed_sample / "train.jsonl")[:3]:
        tokenised = strategy.tokenize_prompt(row)
        first = next(i for i, label in enumerate(tokenised["labels"]) if label != -100)
        prompt = tokenizer.apply_chat_template(
            row["messages"][:-1], add_generation_prompt=True, tokenize=False
        )
        assert tokenizer.decode(tokenised["input_ids"][:first]).rstrip(" ") == prompt


def test_mistral_training_prompt_is_mistrals_own_generation_prompt(family_dir, processed_sample):
    """The recipe's template renders [system, user] exactly as Mistral's own v0.3 template
    (Axolotl's mistral_v2v3) does at generation time, and keeps that text in training rows."""
    from axolotl.utils.chat_templates import get_chat_template
    from transformers import AutoTokenizer

    recipe = REPO / "recipes" / "mistral7b-qlora.yml"
    ours = yaml.safe_load(recipe.read_text())["chat_template_jinja"]
    tokenizer = AutoTokenizer.from_pretrained(family_dir(recipe))
    for row in read_jsonl(processed_sample / "train.jsonl")[:3]:
        question = row["messages"][:-1]
        mistral = tokenizer.apply_chat_template(
            question, chat_template=get_chat_template("mistral_v2v3"), tokenize=False
        )
        assert tokenizer.apply_chat_template(question, chat_template=ours, tokenize=False) == (
            mistral
        )
        full = tokenizer.apply_chat_template(row["messages"], chat_template=ours, tokenize=False)
        assert full.startswith(mistral) and row["messages"][0]["content"] in full
        # Why the recipe has its own template: Mistral's drops the system text from any chat
        # that ends with an answer, i.e. from every training row.
        theirs = tokenizer.apply_chat_template(
            row["messages"], chat_template=get_chat_template("mistral_v2v3"), tokenize=False
        )
        assert row["messages"][0]["content"] not in theirs
