"""The directory of prometheus-client's multiprocess values, for one server start (standard library only).

prometheus-client picks its value class when it is imported, so the directory must be in the
environment before then: ``kura serve`` creates it first, and every worker inherits it. The supervisor
imports this module too, and stays a bare interpreter.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNED_ENV = "KURA_METRICS_DIR"  # the directory Kura made, so it never removes one a user named


def prepare_directory() -> str:
    """A new, empty directory for this start's values (the library's rule: empty when the server starts)."""
    path = tempfile.mkdtemp(prefix="kura-metrics-")
    os.environ[MULTIPROC_ENV] = os.environ[OWNED_ENV] = path
    return path


def disable() -> None:
    """Metrics are off: a ``PROMETHEUS_MULTIPROC_DIR`` left in the environment must not switch workers to files."""
    os.environ.pop(MULTIPROC_ENV, None)
    os.environ.pop(OWNED_ENV, None)


def forget_worker(pid: int) -> None:
    """What ``prometheus_client.multiprocess.mark_process_dead`` does: drop a dead worker's live gauges.

    Its counters and histograms stay, so totals never go backwards; ``live*`` gauges (requests in
    flight) would otherwise keep counting requests the dead worker will never finish.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        for name in glob.glob(os.path.join(path, f"gauge_live*_{pid}.db")):
            os.remove(name)


def remove_directory() -> None:
    path = os.environ.get(OWNED_ENV)
    if path:
        shutil.rmtree(path, ignore_errors=True)
