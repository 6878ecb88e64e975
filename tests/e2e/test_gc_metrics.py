"""The server's own collections (child processes of its workers) are counted in /metrics.

A real ``kura serve --workers 2`` with online GC and Prometheus metrics on: a blob nothing
references is uploaded, the schedule sweeps it once its grace is over, and the debug server's
/metrics (every process's values, the collector's child included) shows the run, the blob and
its bytes.
"""

from __future__ import annotations

import hashlib
import os
import re

import httpx
import pytest

from tests.e2e.servers import Listener, eventually, kura_argv, running

pytestmark = pytest.mark.e2e


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_server_collections_feed_the_gc_metrics(tmp_path: object, listener: Listener, debug_listener: Listener) -> None:
    root = os.path.join(str(tmp_path), "root")
    port, debug = listener.port, debug_listener.port
    env = dict(
        os.environ,
        TMPDIR=str(tmp_path),
        REGISTRY_HTTP_DEBUG_ADDR=f"127.0.0.1:{debug}",
        REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED="true",
        REGISTRY_KURA_GC_ENABLED="true",
        REGISTRY_KURA_GC_INTERVAL="0.5s",
        REGISTRY_KURA_GC_GRACE="2s",
    )
    log = os.path.join(str(tmp_path), "kura.log")
    garbage = os.urandom(4321)
    digest = "sha256:" + hashlib.sha256(garbage).hexdigest()
    argv = kura_argv(root, listener, "--workers", "2", debug=debug_listener)
    with running(argv, f"http://127.0.0.1:{port}", log, env) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v2/gc/metrics/blobs/uploads/")
            assert r.status_code == 202, r.text
            r = client.put(r.headers["location"], params={"digest": digest}, content=garbage)
            assert r.status_code == 201, r.text

        def scrape() -> str:
            return httpx.get(f"http://127.0.0.1:{debug}/metrics", timeout=5).text

        data = os.path.join(root, "docker/registry/v2/blobs/sha256", digest[7:9], digest[7:], "data")
        assert eventually(lambda: not os.path.exists(data), timeout=60)
        assert eventually(lambda: _value(scrape(), "kura_gc_deleted_blobs_total") >= 1, timeout=30)
        text = scrape()
    assert _value(text, 'kura_gc_runs_total{result="success"}') >= 1
    assert _value(text, 'kura_gc_runs_total{result="error"}') == 0
    assert _value(text, "kura_gc_freed_bytes_total") >= len(garbage)
    assert _value(text, "kura_gc_duration_seconds_count") >= 1
