"""A real Prometheus scrapes a real ``kura serve --workers 2``: the push just made is in a PromQL answer."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.servers import KURA, Listener, announced, eventually, kura_argv, require, spawn, started, stop
from tests.oci import random_image, sha256

pytestmark = pytest.mark.e2e
LISTENING = re.compile(r'msg="Listening on" address=(127\.0\.0\.1:\d+)')  # Prometheus on port 0 (it is Go: no --fd)


def workers_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


@contextlib.contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    binary = require("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: kura\n    static_configs:\n      - targets: ['{target}']\n"
    )
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        "--web.listen-address=127.0.0.1:0",
    ]
    log = str(tmp_path / "prometheus.log")
    process = spawn(argv, log)
    try:
        url = "http://" + announced(LISTENING, process, log)
        assert eventually(lambda: _ready(url), timeout=60), (tmp_path / "prometheus.log").read_text()[-3000:]
        yield url
    finally:
        stop(process)


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    return False


def query(url: str, promql: str) -> float | None:
    """The value of a one-element instant vector, or None while it has no sample."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def scrape(debug: str) -> dict[str, float]:
    """``name{labels}`` -> value from one scrape of the debug server."""
    text = httpx.get(f"{debug}/metrics", timeout=5).text
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in text.splitlines() if line[:1] != "#")}


def test_prometheus_sees_the_push_through_any_worker(
    tmp_path: Path, root: str, listener: Listener, debug_listener: Listener
) -> None:
    port, debug_port = listener.port, debug_listener.port
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n  formatter: json\n  fields:\n    service: kura-e2e\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  debug:\n    addr: 127.0.0.1:{debug_port}\n"
        "    prometheus:\n      enabled: true\n"
        "health:\n  storagedriver:\n    enabled: true\n    interval: 1s\n"
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # registry serve config.yml's form: the config is positional; log.level warn crashed every worker once (issue 10)
    inherit = ["--fd", str(listener.fd), "--debug-fd", str(debug_listener.fd)]
    argv = [*KURA, str(config), "--root", root, *inherit, "--workers", "2"]
    url, debug, log = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{debug_port}", str(tmp_path / "kura.log")
    with started(argv, url, log, dict(os.environ, TMPDIR=str(tmp))) as supervisor:
        (directory,) = glob.glob(str(tmp / "kura-metrics-*"))
        assert httpx.get(f"{debug}/debug/health").json() == {}
        # The debug port bounds request heads as the registry's does (it shares the registry's loop)
        try:
            assert httpx.get(f"{debug}/debug/health", headers={"X-Big": "a" * (2 << 20)}).status_code == 431
        except httpx.TransportError:
            pass  # "or close the connection": the client was still sending when the server closed

        with prometheus(tmp_path, f"127.0.0.1:{debug_port}") as prom:
            assert eventually(lambda: query(prom, 'up{job="kura"}') == 1.0, timeout=60)
            pushed = "sum(registry_http_requests_total{handler='manifest',method='put',code='201'})"
            assert query(prom, pushed) is None  # nothing pushed yet

            image = random_image(layers=2, size=50_000, seed=5)
            with httpx.Client(base_url=url) as client:
                for data in image.blobs.values():
                    r = client.post("/v2/obs/app/blobs/uploads/", params={"digest": sha256(data)}, content=data)
                    assert r.status_code == 201, r.text
                headers = {"Content-Type": image.media_type}
                assert (
                    client.put("/v2/obs/app/manifests/v1", content=image.manifest, headers=headers).status_code == 201
                )
                layer = image.layers[0]
                assert client.get(f"/v2/obs/app/blobs/{sha256(layer)}").content == layer  # sendfile'd

            assert eventually(lambda: query(prom, pushed) == 1.0, timeout=30), query(prom, pushed)
            blob_bytes = float(sum(len(b) for b in image.blobs.values()))
            assert query(prom, "sum(kura_bytes_pushed_total{type='blob'})") == blob_bytes
            assert query(prom, "sum(kura_bytes_pushed_total{type='manifest'})") == float(len(image.manifest))
            assert eventually(lambda: query(prom, "sum(kura_bytes_pulled_total{type='blob'})") == float(len(layer)))

        # One scrape is the whole server: 40 fresh connections, spread by the kernel, all counted at once
        base = 'registry_http_requests_total{code="200",handler="base",method="get"}'
        before = scrape(debug)[base]
        for _ in range(40):
            assert httpx.get(f"{url}/v2/").status_code == 200
        assert scrape(debug)[base] == before + 40
        workers = workers_of(supervisor.pid)
        files = {os.path.basename(p) for p in glob.glob(os.path.join(directory, "counter_*.db"))}
        assert files >= {f"counter_{pid}.db" for pid in workers}

        # A dead worker's counts stay (totals never go backwards); its live gauge file goes
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        assert eventually(lambda: len(workers_of(supervisor.pid) - workers) == 1)
        assert eventually(lambda: not os.path.exists(os.path.join(directory, f"gauge_livesum_{victim}.db")))
        assert scrape(debug)[base] == before + 40
        assert eventually(lambda: httpx.get(f"{debug}/debug/health").status_code == 200)
    assert not os.path.exists(directory)  # removed when the server stopped

    lines = [json.loads(line) for line in Path(log).read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("msg") == "response completed"]
    put = next(a for a in access if a["http.request.method"] == "PUT")
    assert put["vars.name"] == "obs/app" and put["http.response.status"] == 201 and put["service"] == "kura-e2e"
    assert put["http.request.read"] == len(image.manifest)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_one_worker_serves_both_ports_and_cleans_up(
    tmp_path: Path, root: str, stop_signal: int, listener: Listener, debug_listener: Listener
) -> None:
    """Without a supervisor the worker itself removes the metrics directory, and a signal is a clean exit."""
    port, debug_port = listener.port, debug_listener.port
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), REGISTRY_HTTP_DEBUG_ADDR=f"127.0.0.1:{debug_port}")
    env["REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED"] = "true"
    url, log = f"http://127.0.0.1:{port}", str(tmp_path / "kura.log")
    argv = kura_argv(root, listener, "--workers", "1", debug=debug_listener)
    with started(argv, url, log, env) as server:
        assert glob.glob(str(tmp / "kura-metrics-*"))
        assert "registry_http_requests_total" in httpx.get(f"http://127.0.0.1:{debug_port}/metrics").text
        server.send_signal(stop_signal)
        assert server.wait(20) == 0
    assert glob.glob(str(tmp / "kura-metrics-*")) == []
    assert "Traceback" not in Path(log).read_text()
