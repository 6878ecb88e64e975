"""The server's collections run as batch tasks at nice 19 and the lowest best-effort I/O level, threads included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import priority
from app.cli import main
from app.config import SETTINGS_ENV, Settings

PROBE = """
import json, os, subprocess, threading
from app import priority

applied = priority.lower()
seen = {}

def probe() -> None:  # a thread started afterwards, as the driver's removal threads are
    seen["batch"] = os.sched_getscheduler(0) == os.SCHED_BATCH
    seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    ionice = ["ionice", "-p", str(threading.get_native_id())]
    seen["io"] = subprocess.run(ionice, capture_output=True, text=True, check=True).stdout.strip()

thread = threading.Thread(target=probe)
thread.start()
thread.join()
print(json.dumps({"applied": applied, **seen}))
"""


def test_lower_reaches_the_threads_started_after_it() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    assert found == {
        "applied": ["SCHED_BATCH", "nice 19", "lowest best-effort I/O"],
        "batch": True,
        "nice": 19,
        "io": "best-effort: prio 7",
    }
    assert os.sched_getscheduler(0) != os.SCHED_BATCH  # this process (the parent) is untouched


def test_only_the_servers_own_runs_lower_themselves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def lower() -> list[str]:
        calls.append("lowered")
        return []

    monkeypatch.setattr(priority, "lower", lower)
    root = str(tmp_path / "root")
    assert main(["garbage-collect", "--root", root, "-q"]) == 0
    assert calls == []  # a command run by hand keeps its priority
    settings = Settings.model_validate({"storage": {"filesystem": {"rootdirectory": root}}})
    monkeypatch.setenv(SETTINGS_ENV, settings.model_dump_json())
    assert main(["garbage-collect", "--settings-env"]) == 0
    assert calls == ["lowered"]
