"""A BuildKit registry cache rebuilt again and again on a real ``kura serve`` whose online GC applies a
size cap to ``cache/**``. ``--cache-to type=registry,mode=max`` rewrites the main branch's tag every
build, and every pull request adds a tag of its own, so tag retention alone keeps everything. With the
cap the repository stays under its budget, the caches imported recently stay, and the last cache
still resolves whole. (Debian's docker.io has no buildx, so the caches are BuildKit's formats built
in Python, both of them, as ``kura demo`` pushes them.)"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
import pytest

from app.images.buildkit import Content
from tests.e2e.servers import Listener, eventually, kura_argv, running
from tests.e2e.test_gc_compat import pulls, push
from tests.storage.gctree import varied_cache

pytestmark = pytest.mark.e2e

GRACE = 1.0
BUILDS = 10
PAYLOAD = 20_000


def build(number: int) -> tuple[Content, str]:
    """Even builds are the main branch's; odd ones a pull request's. Both cache forms alternate."""
    content = varied_cache(number, image_manifest=number % 4 < 2, payload=PAYLOAD)
    return content, "main" if number % 2 == 0 else f"pr-{number}"


def cache_size() -> int:
    cache, _ = build(BUILDS)
    return sum(len(b) for b in cache.blobs.values()) + len(cache.root[0])


def stored_bytes(root: str) -> int:
    total = 0
    for directory, _, files in os.walk(os.path.join(root, "docker/registry/v2/blobs")):
        if "data" in files:
            total += os.path.getsize(os.path.join(directory, "data"))
    return total


def last_start(root: str) -> int:
    try:
        with open(os.path.join(root, "kura/gc/state.json")) as f:
            return int(json.load(f)["runs"][-1]["started_ns"])
    except (OSError, ValueError, IndexError):
        return 0


def next_run(root: str) -> None:
    """Wait until a collection starts after now (and so sees everything pushed so far)."""
    seen = last_start(root)
    assert eventually(lambda: last_start(root) > seen, timeout=30)


def test_size_cap_keeps_a_rebuilt_cache_under_budget(tmp_path: object, listener: Listener) -> None:
    root = os.path.join(str(tmp_path), "root")
    cap = int(cache_size() * 2.5)
    config = os.path.join(str(tmp_path), "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\nstorage:\n  delete:\n    enabled: true\n"
            f"kura:\n  gc:\n    enabled: true\n    interval: 0.3s\n    grace: {GRACE}s\n    trashdelay: 0s\n"
            f"  retention:\n    - repositories: ['cache/**']\n      sizecap: {cap}\n      deleteuntagged: true\n"
        )
    log = os.path.join(str(tmp_path), "kura.log")
    peak = 0
    argv = kura_argv(root, listener, "--workers", "2", "--config", config)
    with running(argv, f"http://127.0.0.1:{listener.port}", log) as url:
        for number in range(1, BUILDS + 1):
            content, tag = build(number)
            assert number < 3 or pulls(url, "cache/app", "main")  # each build imports main's cache first
            push(url, "cache/app", content, tag)
            time.sleep(GRACE * 1.5)
            next_run(root)
            peak = max(peak, stored_bytes(root))
        time.sleep(GRACE * 1.5)
        next_run(root)
        final = stored_bytes(root)
        resolved = pulls(url, "cache/app", "main")
        with httpx.Client(base_url=url) as client:
            manifest = client.get("/v2/cache/app/manifests/main").content
            tags = client.get("/v2/cache/app/tags/list").json()["tags"]
    pushed_total = sum(sum(len(b) for b in build(n)[0].blobs.values()) for n in range(1, BUILDS + 1))
    print(
        f"\nsize cap {cap} B: {BUILDS} builds pushed {pushed_total} B of blobs; on disk at most {peak} B, "
        f"finally {final} B; tags left {tags}",
        file=sys.stderr,
    )
    assert final <= cap
    assert resolved and manifest == build(BUILDS)[0].root[0]  # the last cache imports
    assert "main" in tags and f"pr-{BUILDS - 1}" in tags and "pr-1" not in tags
