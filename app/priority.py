"""A low CPU and disk priority for a background process: the server's garbage collections.

``SCHED_BATCH`` at nice 19: the weight of nice 19 (about 1.5 % of a core against each busy normal
task) and, as a batch task, no preemption of a request's thread when the collector wakes from its
disk waits. Not ``SCHED_IDLE``: an idle-policy task runs only on a core with nothing else to do, and
beside two CPU-bound processes it never finished a collection (online GC must keep a busy cache
registry within its disk), while a stripe lock it held stalled requests for as long.

The I/O priority is the lowest best-effort level, not the idle class, for the same reason: the idle
class waits for a disk nobody else uses, which a registry under push load never has. (Block
schedulers that ignore priorities, such as ``none``, ignore both.)

Both are per thread on Linux and inherited by threads and children started afterwards: call
``lower`` before the process starts any thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger("kura.gc")

NICENESS = 19  # with SCHED_BATCH, or alone where that policy is refused
# ioprio_set(2) has no libc wrapper: its syscall numbers (asm/unistd.h) on the architectures Kura ships for
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_BE = 2
IOPRIO_LOWEST = 7  # best-effort levels run 0 (first) to 7
IOPRIO_CLASS_SHIFT = 13


def lower() -> list[str]:
    """Lower this process's CPU and I/O priority; returns what was set."""
    applied: list[str] = []
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        applied.append("SCHED_BATCH")
    except (AttributeError, OSError):  # not Linux, or a sandbox refuses it: nice alone
        pass
    os.nice(NICENESS - os.nice(0))
    applied.append(f"nice {NICENESS}")
    if _lowest_io():
        applied.append("lowest best-effort I/O")
    log.debug("collector priority: %s", ", ".join(applied))
    return applied


def _lowest_io() -> bool:
    number = IOPRIO_SET.get(platform.machine())
    if number is None:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    value = IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | IOPRIO_LOWEST
    return int(libc.syscall(number, IOPRIO_WHO_PROCESS, 0, value)) == 0
