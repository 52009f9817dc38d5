"""Ending a command's process without the interpreter's teardown.

After torch, transformers and peft are imported, Python's own exit frees every module and
object one by one and runs C++ static destructors: 1.3-1.9 s for `python -m eval` on our CPU,
~3 s for Axolotl's training process. A process whose work is done and whose files are written
can skip that: exit_without_teardown waits for non-daemon threads and runs every exit handler,
as the interpreter would, flushes stdout and stderr, and lets the OS take the memory back at
once.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn


def exit_without_teardown(status: int) -> NoReturn:
    """Exit with `status` as sys.exit would, minus the interpreter's teardown. Non-daemon threads
    are waited for and every exit handler runs first (atexit's own runner: logging's flush, tqdm,
    hub clients...), then stdout and stderr are flushed; every file the caller wrote must be
    closed before. A process with vLLM in it exits normally: its worker processes are shut down
    by finalizers too."""
    if "vllm" in sys.modules:
        sys.exit(status)
    import threading

    # The interpreter's own first step: threading's exit hooks (concurrent.futures wakes its idle
    # pool workers so they end), then every non-daemon thread is waited for. Joining the threads
    # without the hooks would wait forever on an idle ThreadPoolExecutor worker.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # what the interpreter's own exit runs next, in the same order
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (e.g. `| head`): nothing more to say
            pass
    os._exit(status)
