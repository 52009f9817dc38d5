"""`python -m training merge`: the tiny-cpu run's adapter folded into its base with axolotl.

The merged model must load with transformers while peft cannot even be imported, carry the
run's tokenizer and chat template, and decode greedily exactly like base + adapter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from training.merge import MergeError, merge, merge_config

pytestmark = pytest.mark.slow

PROMPTS = [
    "Cisplatin caused nephrotoxicity in rats.",
    "List the chemicals: lithium, haloperidol.",
    "Chemical naloxone influences disease hypotension",
]
NEW_TOKENS = 12

# Runs in a fresh interpreter where `import peft` fails, as on a machine without it.
LOAD_WITHOUT_PEFT = r"""
import json, sys
from importlib.machinery import PathFinder

class NoPeft(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "peft" else super().find_spec(name, path, target)

sys.meta_path[sys.meta_path.index(PathFinder)] = NoPeft
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

merged, prompts, new_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(merged)
model = AutoModelForCausalLM.from_pretrained(merged).eval()
outputs = []
for prompt in prompts:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    outputs.append(out[0, ids["input_ids"].shape[1]:].tolist())
try:
    import peft  # noqa: F401
    outputs = "peft was importable"
except ImportError:
    pass
print(json.dumps({"tokens": outputs, "class": type(model).__name__}))
"""


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of the session's tiny run (tests must not change the shared one)."""
    skip = shutil.ignore_patterns("checkpoint-*")
    return Path(shutil.copytree(run, dest / run.name, ignore=skip))


def greedy_with_adapter(run: Path) -> list[list[int]]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = merge_config(run)["base_model"]  # the run's base model, resolved as the merge does
    tokenizer = AutoTokenizer.from_pretrained(run)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run).eval()
    outputs = []
    for prompt in PROMPTS:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        outputs.append(out[0, ids["input_ids"].shape[1] :].tolist())
    return outputs


@pytest.fixture(scope="module")
def merged_run(tiny_run, tmp_path_factory) -> Path:
    """The run copied, then merged through the command `make merge` runs."""
    run = copy_run(tiny_run, tmp_path_factory.mktemp("merge"))
    (run / "debug.log").write_text("the training's own log\n")
    result = run_cli(["training", "merge", run], timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    assert f"merged model (loads with transformers alone): {run / 'merged'}" in result.stdout
    return run


def test_merged_model_loads_without_peft_and_decodes_like_base_plus_adapter(merged_run):
    merged = merged_run / "merged"
    assert not (merged / "adapter_config.json").exists()  # nothing for transformers to hand to peft
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_PEFT,
            str(merged),
            json.dumps(PROMPTS),
            str(NEW_TOKENS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["class"] == "LlamaForCausalLM"

    expected = greedy_with_adapter(merged_run)
    assert loaded["tokens"] == expected
    assert all(len(tokens) > 0 for tokens in expected)


def test_merge_applied_the_adapter(merged_run):
    """The merged weights are base + delta, not a copy of the base."""
    from safetensors.torch import load_file

    base = Path(merge_config(merged_run)["base_model"])
    before, after = (
        load_file(base / "model.safetensors"),
        load_file(merged_run / "merged" / "model.safetensors"),
    )
    assert before.keys() == after.keys()
    changed = [key for key in before if not before[key].equal(after[key])]
    assert changed and all(key.endswith("proj.weight") for key in changed)
    assert {before[key].dtype for key in before} == {after[key].dtype for key in after}


def test_merged_dir_has_the_runs_tokenizer_and_chat_template(merged_run):
    from transformers import AutoTokenizer

    run_tokenizer = AutoTokenizer.from_pretrained(merged_run)
    merged_tokenizer = AutoTokenizer.from_pretrained(merged_run / "merged")
    assert merged_tokenizer.chat_template == run_tokenizer.chat_template
    assert merged_tokenizer.get_vocab() == run_tokenizer.get_vocab()
    # Axolotl appended its merge log instead of truncating the training's debug.log.
    assert (merged_run / "debug.log").read_text().startswith("the training's own log\n")


def test_merge_config_turns_training_speedups_off(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    config = yaml.safe_load((run / "config.yml").read_text())
    config.update(
        adapter="qlora",
        load_in_4bit=True,
        lora_mlp_kernel=True,
        flash_attention=True,
        sample_packing=True,
        plugins=["axolotl.integrations.liger.LigerPlugin"],
        liger_rms_norm=True,
        deepspeed="deepspeed/zero2.json",
    )
    (run / "config.yml").write_text(yaml.safe_dump(config))

    merged = merge_config(run)
    assert "plugins" not in merged and "liger_rms_norm" not in merged
    assert merged["lora_mlp_kernel"] is False and merged["flash_attention"] is False
    assert merged["sample_packing"] is False and merged["deepspeed"] is None
    assert merged["output_dir"] == merged["lora_model_dir"] == str(run.resolve())
    assert (merged["adapter"], merged["load_in_4bit"]) == ("qlora", True)  # axolotl's NF4 path
    plain = merge_config(run, nf4_roundtrip=False)
    assert (plain["adapter"], plain["load_in_4bit"]) == ("lora", False)
    assert yaml.safe_load((run / "config.yml").read_text()) == config  # the run is untouched


def test_merge_without_final_adapter_says_so(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    (run / "adapter_model.safetensors").unlink()
    (run / "checkpoint-2").mkdir()
    with pytest.raises(MergeError, match=r"no final adapter .*checkpoint-2"):
        merge(run)
    assert not (run / "merged").exists()


def test_extract_with_merged_model_matches_adapter(merged_run):
    """`inference extract --merged` serves the merged model and answers as base + adapter does."""
    from inference.extract import Extractor

    texts = ["Lithium caused tremor in two patients.", PROMPTS[0]]
    merged = Extractor(merged_run, merged=True, max_new_tokens=NEW_TOKENS)
    assert merged.target.adapter is None
    adapter = Extractor(merged_run, max_new_tokens=NEW_TOKENS)
    assert merged.extract(texts) == adapter.extract(texts)
