"""How long this process has been running, from the kernel's own record.

Commands count their phases from the process's start, so that the interpreter's start-up and
the imports are in them. psutil's create_time() adds the process's start (in clock ticks since
boot) to the boot time, which /proc/stat gives in whole seconds: the result can be up to a
second early, and a phase measured from it can come out negative. Here the age is the seconds
since boot (/proc/uptime, 10 ms resolution) minus the start in ticks since boot: both from the
same clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def process_age() -> float | None:
    """Seconds since this process started; None where /proc cannot say (not Linux)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Field 2, the program name, may hold spaces: count fields after its closing ')'.
        # There the start time (field 22 of proc(5)) is the 20th.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def process_started() -> float:
    """When this process started, in epoch seconds (now, where the OS cannot say)."""
    age = process_age()
    return time.time() - (age or 0.0)
