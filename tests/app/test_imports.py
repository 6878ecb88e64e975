"""What a worker loads: the libraries only some configurations use stay out of a worker that has no use
for them (each costs every worker 2 MB or more, against the server's memory budget)."""

from __future__ import annotations

import subprocess
import sys

LAZY = ("httpx", "jinja2", "jwt", "cryptography")  # notifications, UI pages, token auth


def test_the_app_loads_no_library_only_some_configurations_need() -> None:
    probe = f"import sys, app.main; print(*sorted(m for m in {LAZY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
