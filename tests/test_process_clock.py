"""A command's phases count from its process's start: the age includes what ran before the
command's code (here a 1 s sleep), never comes out negative, and is not a second off."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import REPO

from preprocessing.process_clock import process_age, process_started

pytestmark = pytest.mark.skipif(process_age() is None, reason="needs Linux /proc")


def test_age_counts_from_the_process_start() -> None:
    code = (
        "import time; time.sleep(1.0); "
        "from preprocessing.process_clock import process_age, process_started; "
        "print(process_age(), time.time() - process_started())"
    )
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    returned = time.time()
    age, since_start = map(float, out.split())
    assert 1.0 <= age <= returned - spawned + 0.05
    assert abs(since_start - age) < 0.05  # one clock: no whole-second rounding of the boot time


def test_this_process_started_before_now() -> None:
    assert 0.0 < time.time() - process_started() < 24 * 3600
