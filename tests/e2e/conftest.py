from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import Listener, require


@pytest.fixture
def root(tmp_path: Path) -> str:
    path = tmp_path / "root"
    path.mkdir()
    return str(path)


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A pre-bound port for the test's server (``kura_argv(root, listener)``), closed when the test ends."""
    with Listener() as bound:
        yield bound


@pytest.fixture
def debug_listener() -> Iterator[Listener]:
    """A second one, for the debug server (``kura_argv(root, listener, debug=debug_listener)``)."""
    with Listener() as bound:
        yield bound


class Skopeo:
    def __init__(self, tmp: Path) -> None:
        self.binary = require("skopeo")
        self.policy = str(tmp / "policy.json")
        with open(self.policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)

    def __call__(self, *args: str) -> str:
        argv = [self.binary, "--policy", self.policy, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=dict(os.environ, TMPDIR="/tmp"))
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def copy(self, source: str, dest: str, *extra: str) -> str:
        return self("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, source, dest)


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path)
