"""The training process ends at Axolotl's last hook without the interpreter's teardown, unless a
plugin after ours still has a post_train_unload to run (a real Axolotl PluginManager, in a
process of its own)."""

from __future__ import annotations

import subprocess
import textwrap

import conftest

SCRIPT = textwrap.dedent(
    """
    import atexit, sys
    from axolotl.integrations.base import BasePlugin, PluginManager
    from axolotl.utils.dict import DictDefault

    class Quiet(BasePlugin):  # no post_train_unload of its own
        pass

    class Unloads(BasePlugin):
        def post_train_unload(self, cfg):
            print("later plugin unloaded")

    manager = PluginManager.get_instance()
    manager.register("training.axolotl_plugin.RunPlugin")
    manager.plugins["later"] = {later}()
    atexit.register(print, "exit handler ran")
    manager.post_train_unload(DictDefault({{"output_dir": sys.argv[1]}}))
    print("returned to axolotl")
    """
)


def run_hooks(tmp_path, later: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = SCRIPT.format(later=later)
    return subprocess.run(
        [conftest.PYTHON, "-c", script, str(tmp_path)], cwd=conftest.REPO, capture_output=True,
        text=True, timeout=300, env=env,
    )  # fmt: skip


def test_the_last_hook_ends_the_process_after_the_exit_handlers(tmp_path):
    done = run_hooks(tmp_path, "Quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["exit handler ran"]  # never back in Axolotl's code
    assert "axolotl clean-up" in (tmp_path / "phase_marks.json").read_text()


def test_a_later_plugin_with_its_own_unload_hook_still_runs(tmp_path):
    done = run_hooks(tmp_path, "Unloads")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "later plugin unloaded", "returned to axolotl", "exit handler ran"
    ]  # fmt: skip


def test_each_process_of_a_multi_gpu_run_exits_as_usual(tmp_path):
    import os

    done = run_hooks(tmp_path, "Quiet", env={**os.environ, "WORLD_SIZE": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["returned to axolotl", "exit handler ran"]
