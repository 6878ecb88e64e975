"""Notifications across failure: a receiver that fails, is slow, and is down while ``kura serve
--workers 2`` is killed with SIGKILL (leader worker alone, then the whole process group) and restarted.

Every event whose request Kura answered 2xx must reach the receiver, in request order; no event may
arrive that no request caused; the same event may arrive twice (at-least-once), always with its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.supervisor import BOOT_WINDOW
from storage import Spool
from storage.drivers import FilesystemDriver
from tests.e2e.servers import (
    REPO,
    Listener,
    eventually,
    kura_argv,
    passed_fds,
    registry2_serving,
    running,
    wait_ready,
)
from tests.oci import random_image, sha256

Key = tuple[str, str, str | None, str | None]  # action, repository, digest, tag

SLOW = 1.0  # seconds the slow receiver takes; Kura's timeout below is shorter


def key(event: dict[str, Any]) -> Key:
    t = event["target"]
    return (event["action"], t["repository"], t.get("digest"), t.get("tag"))


def reusable_socket(port: int) -> socket.socket:
    # Coming back on the same port while the last run's accepted connections linger needs SO_REUSEPORT
    # on every socket of the port, the first one included.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@dataclass
class Arrival:
    key: Key
    id: str
    status: int
    event: dict[str, Any]


@dataclass
class Receiver:
    """A loopback webhook receiver whose behaviour the test switches: ok, fail (500), slow, down."""

    port: int
    mode: str = "ok"
    arrivals: list[Arrival] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    held: socket.socket | None = None  # while down: the port, bound and never listening

    def start(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = reusable_socket(self.port)
        sock.listen(64)
        if self.held is not None:
            self.held.close()
            self.held = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(body)
                mode = receiver.mode
                status = 500 if mode == "fail" else 200
                if mode == "slow":
                    time.sleep(SLOW)
                assert self.headers["Content-Type"] == "application/vnd.docker.distribution.events.v1+json"
                (event,) = json.loads(body)["events"]
                with receiver.lock:
                    receiver.arrivals.append(Arrival(key(event), event["id"], status, event))
                with contextlib.suppress(OSError):  # Kura may have given up on a slow answer
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server

    def stop(self) -> None:
        """Down: the port refuses connections, and stays held for ``start``, so that nothing else takes it."""
        if self.server is not None:
            self.held = reusable_socket(self.port)
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.stop()
        if self.held is not None:
            self.held.close()
            self.held = None

    def count(self, mode_status: int | None = None) -> int:
        with self.lock:
            return sum(1 for a in self.arrivals if mode_status is None or a.status == mode_status)

    def delivered(self) -> set[Key]:
        with self.lock:
            return {a.key for a in self.arrivals if 200 <= a.status < 400}


@dataclass
class Workload:
    """Sequential registry requests; each confirmed (2xx) request's events are expected."""

    issued: list[Key] = field(default_factory=list)  # every event a request may have caused, in order
    confirmed: set[Key] = field(default_factory=set)  # those whose request got a 2xx
    round: int = 0

    def step(self, client: httpx.Client) -> None:
        """One round: push an image (2 blobs, a tagged manifest), pull it, mount a blob, delete it."""
        i = self.round
        self.round += 1
        repo = f"e2e/r{i % 3}"
        image = random_image(layers=1, seed=1000 + i, size=512)
        requests: list[tuple[list[Key], Any]] = []
        for digest, data in image.blobs.items():
            requests.append(
                (
                    [("push", repo, digest, None)],
                    lambda d=digest, b=data: client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=b),
                )
            )
        tag = f"t{i}"
        headers = {"Content-Type": image.media_type}
        requests.append(
            (
                [("push", repo, image.digest, tag)],
                lambda: client.put(f"/v2/{repo}/manifests/{tag}", content=image.manifest, headers=headers),
            )
        )
        requests.append(([("pull", repo, image.digest, tag)], lambda: client.get(f"/v2/{repo}/manifests/{tag}")))
        layer = sha256(image.layers[0])
        mounted = f"e2e/mounted{i}"
        requests.append(
            (
                [("mount", mounted, layer, None)],
                lambda: client.post(f"/v2/{mounted}/blobs/uploads/", params={"mount": layer, "from": repo}),
            )
        )
        requests.append(([("delete", mounted, layer, None)], lambda: client.delete(f"/v2/{mounted}/blobs/{layer}")))
        for keys, send in requests:
            self.issued.extend(keys)
            response = send()
            assert response.status_code in (201, 200, 202), response.text
            self.confirmed.update(keys)


def spool_length(root: str, endpoint: str) -> int:
    """Events waiting in the endpoint's spool, as Kura's own spool lists them."""

    async def count() -> int:
        driver = FilesystemDriver(root)
        try:
            return len(await Spool.of_endpoint(driver, endpoint).pending())
        finally:
            await driver.close()

    return asyncio.run(count())


def leader_pid(spool: str) -> int | None:
    """The pid holding the spool's leader flock, from /proc/locks."""
    try:
        inode = os.stat(os.path.join(spool, "leader.lock")).st_ino
    except FileNotFoundError:
        return None
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[1] == str(inode):
                return int(fields[4])
    return None


@contextlib.contextmanager
def kura_group(argv: list[str], url: str, log: str) -> Iterator[subprocess.Popen[bytes]]:
    """``kura serve`` in its own process group, so the test can SIGKILL the supervisor and workers at once."""
    env = dict(os.environ, REGISTRY_STORAGE_DELETE_ENABLED="true")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
            pass_fds=passed_fds(argv),
        )
    try:
        wait_ready(url, process, log)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.e2e
def test_every_acknowledged_event_arrives_across_failures_and_sigkill(
    tmp_path: Path, root: str, listener: Listener
) -> None:
    hook = reusable_socket(0)
    receiver = Receiver(hook.getsockname()[1], mode="fail")
    receiver.start(hook)
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nnotifications:\n  endpoints:\n    - name: hook\n"
        f"      url: http://127.0.0.1:{receiver.port}/events\n"
        "      timeout: 300ms\n      threshold: 2\n      backoff: 50ms\n      maxbackoff: 400ms\n"
    )
    port = listener.port
    url = f"http://127.0.0.1:{port}"
    argv = kura_argv(root, listener, "--workers", "2", "--config", str(config))
    log = str(tmp_path / "kura.log")
    spool = os.path.join(root, "kura", "notifications", "hook")
    work = Workload()
    stopped_at: dict[str, int] = {}

    with kura_group(argv, url, log) as kura, httpx.Client(base_url=url, timeout=30) as client:
        started = time.monotonic()
        # (a) The receiver answers 500: events pile up, the leader retries the oldest one.
        for _ in range(3):
            work.step(client)
        assert eventually(lambda: receiver.count(500) >= 5)
        # The leading worker dies (SIGKILL); the other worker takes the lock and carries on.
        time.sleep(max(0.0, started + BOOT_WINDOW + 0.5 - time.monotonic()))  # a death this early stops all
        first_leader = leader_pid(spool)
        assert first_leader is not None
        os.kill(first_leader, signal.SIGKILL)
        assert eventually(lambda: leader_pid(spool) not in (None, first_leader))
        work.step(client)
        # (b) The receiver is slower than Kura's timeout: the same event is sent again and again.
        failures = receiver.count(500)
        receiver.mode = "slow"
        assert eventually(lambda: receiver.count(200) >= 3, timeout=60)
        work.step(client)
        # (c) The receiver is down; Kura is killed outright while a client is pushing.
        receiver.stop()
        stopped_at["arrivals"] = receiver.count()
        pushing = threading.Event()

        def push_until_killed() -> None:
            with httpx.Client(base_url=url, timeout=30) as own, contextlib.suppress(httpx.HTTPError):
                while True:
                    work.step(own)
                    pushing.set()

        pusher = threading.Thread(target=push_until_killed)
        pusher.start()
        assert pushing.wait(60)
        while work.round < 7:
            time.sleep(0.01)
        os.killpg(kura.pid, signal.SIGKILL)
        pusher.join(60)
        assert not pusher.is_alive()
        assert kura.wait(30) == -signal.SIGKILL

    # (d) Kura restarts on the same root and the receiver comes back: the spool is delivered.
    before_restart = spool_length(root, "hook")
    receiver.mode = "ok"
    receiver.start()
    with kura_group(argv, url, log):
        assert eventually(lambda: work.confirmed <= receiver.delivered(), timeout=120), sorted(
            work.confirmed - receiver.delivered()
        )

    with receiver.lock:
        arrivals = list(receiver.arrivals)
    receiver.close()
    issued = {k: i for i, k in enumerate(work.issued)}
    assert len(issued) == len(work.issued)  # every request's event is distinct by construction
    # Nothing invented: each arrival is an event some request caused, field for field.
    assert {a.key for a in arrivals} <= set(issued)
    # One id per event, and each event keeps its id through every retry and both restarts.
    ids: dict[Key, set[str]] = {}
    for a in arrivals:
        ids.setdefault(a.key, set()).add(a.id)
    assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}
    assert len({a.id for a in arrivals}) == len(ids)
    # Per endpoint order: events first arrive in the order their requests were made.
    first_seen: list[Key] = []
    for a in arrivals:
        if a.key not in first_seen:
            first_seen.append(a.key)
    assert [issued[k] for k in first_seen] == sorted(issued[k] for k in first_seen)
    for a in arrivals:
        assert a.event["source"]["addr"].endswith(f":{port}")
        assert a.event["request"]["useragent"].startswith("python-httpx/")
    duplicates = len([a for a in arrivals if 200 <= a.status < 400]) - len(receiver.delivered())
    with open(log) as f:
        text = f.read()
    assert "Traceback" not in text
    print(
        f"\nnotifications e2e: requests confirmed {len(work.confirmed)}, issued {len(work.issued)},"
        f" arrivals {len(arrivals)} ({failures} answered 500 before the slow phase),"
        f" distinct events received {len(receiver.delivered())}, duplicate deliveries {duplicates},"
        f" spool files at restart {before_restart}, arrivals before the outage {stopped_at['arrivals']},"
        f" leader killed {first_leader}"
    )


def same_workload(client: httpx.Client) -> None:
    """Requests both servers take alike (registry:2 2.8 refuses a delete by tag, so there is none)."""
    image = random_image(layers=1, seed=5, docker=True)

    def upload(repo: str, data: bytes) -> None:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
        separator = "&" if "?" in location else "?"
        assert client.put(f"{location}{separator}digest={sha256(data)}", content=data).status_code == 201

    for data in image.blobs.values():
        upload("x", data)
    accept = {"Accept": image.media_type}
    manifest = {"Content-Type": image.media_type}
    assert client.put("/v2/x/manifests/v1", content=image.manifest, headers=manifest).status_code == 201
    assert client.get("/v2/x/manifests/v1", headers=accept).status_code == 200
    assert client.head("/v2/x/manifests/v1", headers=accept).status_code == 200
    assert client.get(f"/v2/x/manifests/{image.digest}", headers=accept).status_code == 200
    layer = sha256(image.layers[0])
    assert client.get(f"/v2/x/blobs/{layer}").status_code == 200
    assert client.head(f"/v2/x/blobs/{layer}").status_code == 200
    assert client.get(f"/v2/x/blobs/{sha256(b'absent')}").status_code == 404
    assert client.post("/v2/y/blobs/uploads/", params={"mount": layer, "from": "x"}).status_code == 201
    assert client.delete(f"/v2/y/blobs/{layer}").status_code == 202
    for tag in ("v3", "v2"):
        assert client.put(f"/v2/x/manifests/{tag}", content=image.manifest, headers=manifest).status_code == 201
    assert client.delete(f"/v2/x/manifests/{image.digest}").status_code == 202


def shape(event: dict[str, Any], base: str) -> dict[str, Any]:
    """An event without what differs between two servers and two runs: ids, times, addresses."""
    target = dict(event["target"])
    if "url" in target:
        assert target["url"].startswith(base)
        target["url"] = target["url"][len(base) :]
    return {
        "keys": list(event),
        "action": event["action"],
        "target": list(target.items()),
        "request": [list(event["request"]), event["request"]["method"], event["request"]["useragent"]],
        "actor": event["actor"],
        "source": list(event["source"]),
    }


@pytest.mark.e2e
def test_kura_sends_what_registry2_sends(tmp_path: Path, listener: Listener) -> None:
    """The same requests to registry:2 (Debian's docker-registry) and to Kura: the same events, field
    for field and in the same order, in the same envelope and media type."""
    hook = reusable_socket(0)
    receiver = Receiver(hook.getsockname()[1])
    receiver.start(hook)
    section = (
        f"notifications:\n  endpoints:\n    - name: hook\n      url: http://127.0.0.1:{receiver.port}/events\n"
        "      headers:\n        X-Hook: [kura-test]\n"
    )
    seen: dict[str, tuple[list[dict[str, Any]], list[bytes]]] = {}
    for server in ("registry2", "kura"):
        root = tmp_path / server
        config = tmp_path / f"{server}.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n{section}"
        )
        log = str(tmp_path / f"{server}.log")
        if server == "registry2":
            serving = registry2_serving(str(config), log)
        else:
            argv = kura_argv(str(root), listener, "--config", str(config))
            serving = running(argv, f"http://127.0.0.1:{listener.port}", log)
        with serving as url, httpx.Client(base_url=url, timeout=30) as client:
            same_workload(client)
            assert eventually(lambda: receiver.count() >= 16)  # registry:2 sends asynchronously too
        with receiver.lock:
            seen[server] = ([shape(a.event, url) for a in receiver.arrivals], list(receiver.bodies))
            receiver.arrivals.clear()
            receiver.bodies.clear()
    receiver.close()
    registry2_events, registry2_bodies = seen["registry2"]
    kura_events, kura_bodies = seen["kura"]
    assert len(registry2_events) == 16
    assert kura_events == registry2_events
    for body in [*registry2_bodies, *kura_bodies]:
        assert body.startswith(b'{\n   "events": [\n      {\n         "id": "')  # one event, Go's indent
