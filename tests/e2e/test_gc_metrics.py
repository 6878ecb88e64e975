"""The server's own collections (child processes of its workers) are counted in /metrics.

A real ``kura serve --workers 2`` with online GC and Prometheus metrics on: an image is pushed to two
repositories and a blob nothing references beside it; the schedule sweeps the blob once its grace is
over, and the debug server's /metrics (every process's values, the collector's child included) shows
the run, the blob and its bytes, and the totals left: the image's blobs, their bytes, and what the
second repository shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import httpx
import pytest

from tests.e2e.servers import Listener, eventually, kura_argv, running

pytestmark = pytest.mark.e2e


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload(client: httpx.Client, name: str, data: bytes) -> None:
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = client.put(r.headers["location"], params={"digest": _digest(data)}, content=data)
    assert r.status_code == 201, r.text


def _image() -> tuple[list[bytes], bytes]:
    """A config and a layer, and the manifest naming them."""
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(2000)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config), "size": 37},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer), "size": 2000}],
        }
    ).encode()
    return [config, layer], manifest


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
    digest = _digest(garbage)
    blobs, manifest = _image()
    kept = sum(map(len, blobs)) + len(manifest)
    argv = kura_argv(root, listener, "--workers", "2", debug=debug_listener)
    with running(argv, f"http://127.0.0.1:{port}", log, env) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            for name in ("gc/metrics", "gc/again"):
                for blob in blobs:
                    _upload(client, name, blob)
                r = client.put(
                    f"/v2/{name}/manifests/v1",
                    content=manifest,
                    headers={"content-type": "application/vnd.oci.image.manifest.v1+json"},
                )
                assert r.status_code == 201, r.text
            _upload(client, "gc/metrics", garbage)

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
    assert _value(text, "kura_blobs_stored") == 3
    assert _value(text, "kura_bytes_stored") == kept
    assert _value(text, "kura_bytes_saved_by_deduplication") == kept  # the second repository's copy
