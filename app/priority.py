"""The lowest CPU and disk priority for a background process: the server's garbage collections.

``SCHED_IDLE`` rather than nice 19: a niced process still keeps a core until its time slice ends when
a request wakes up (and, on a kernel without forced preemption, until its syscall returns), while a
task of the idle policy is preempted by any waking normal task, and the scheduler places wakeups on
a core that runs only idle tasks as if it were free. It is not starved outright (the kernel gives it
a small weight), so a stripe lock it holds is released even on a saturated machine; requests wait
for one at most ``storage.gc.touch.LOCK_WAIT``.

The idle I/O class puts its disk requests (the discards its removals cause on a ``discard`` mount)
behind every other process's, where the block scheduler honours classes (mq-deadline, bfq).

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

NICENESS = 19  # where SCHED_IDLE is refused or missing
# ioprio_set(2) has no libc wrapper: its syscall numbers (asm/unistd.h) on the architectures Kura ships for
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_IDLE = 3
IOPRIO_CLASS_SHIFT = 13


def lower() -> list[str]:
    """Lower this process's CPU and I/O priority as far as the system allows; returns what was set."""
    applied: list[str] = []
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        applied.append("SCHED_IDLE")
    except (AttributeError, OSError):  # not Linux, or a sandbox refuses it
        os.nice(NICENESS - os.nice(0))
        applied.append(f"nice {NICENESS}")
    if _idle_io():
        applied.append("idle I/O class")
    log.debug("collector priority: %s", ", ".join(applied))
    return applied


def _idle_io() -> bool:
    number = IOPRIO_SET.get(platform.machine())
    if number is None:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return int(libc.syscall(number, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT)) == 0
