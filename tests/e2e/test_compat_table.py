"""The README's compatibility table says what the suite really runs, with the versions installed."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.servers import REGISTRY2, REPO, require

pytestmark = pytest.mark.e2e

VERSION_OF = {
    "Docker Engine": ["dockerd", "--version"],
    "containerd": ["containerd", "--version"],
    "skopeo": ["skopeo", "--version"],
    "buildah": ["buildah", "--version"],
    "podman": ["podman", "--version"],
    "docker-registry": [REGISTRY2, "--version"],
}
PYPI = {"oras": "oras", "python-dxf": "python-dxf"}


def block() -> str:
    text = (Path(REPO) / "README.md").read_text()
    return text.split("<!-- compat:start -->")[1].split("<!-- compat:end -->")[0]


def table() -> list[list[str]]:
    rows = [line for line in block().strip().splitlines()[2:] if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def recorded_release() -> str:
    """The Debian release whose versions the table records (its header says which)."""
    found = re.search(r"version tested \(Debian (\d+)\)", block())
    assert found, "the table's header names the Debian release its versions are from"
    return found[1]


def this_release() -> str:
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    return fields.get("VERSION_ID", "").strip('"')


def installed_version(client: str) -> str:
    for key, name in PYPI.items():
        if client.startswith(key):
            return importlib.metadata.version(name)
    key = next(k for k in VERSION_OF if client.startswith(k))
    argv = VERSION_OF[key]
    return subprocess.run([require(argv[0]), *argv[1:]], capture_output=True, text=True, check=True).stdout


def e2e_tests() -> set[str]:
    names = set()
    for path in (Path(REPO) / "tests" / "e2e").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return names


def test_versions_match_what_is_installed() -> None:
    if this_release() != recorded_release():
        # Another Debian ships other client versions: that is no failure, but the table cannot vouch
        # for them, so say what this run tested instead (pytest -rs shows it).
        seen = "; ".join(f"{row[0].split(' (')[0]} {installed_version(row[0]).strip()[:60]}" for row in table())
        pytest.skip(f"the table records Debian {recorded_release()}; this run, on Debian {this_release()}: {seen}")
    for client, version, _, _ in table():
        assert re.search(rf"(^|[^\d.]){re.escape(version)}([^\d]|$)", installed_version(client)), (client, version)


def test_every_named_test_exists_and_every_client_test_is_listed() -> None:
    named = {name.strip() for row in table() for name in row[3].split(",")}
    assert named <= e2e_tests()
    clients_module = ast.parse((Path(REPO) / "tests/e2e/test_clients.py").read_text())
    client_tests = {
        n.name for n in clients_module.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
    }
    assert client_tests <= named
