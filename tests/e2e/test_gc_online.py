"""Online garbage collection through a real ``kura serve --workers 2``: GC loops with a short grace
period while clients push (blob uploads, a pause, the manifest PUT; mounts; re-pushes of deduplicated
layers) and pull. Afterwards every image acknowledged with 201 pulls back byte-identical, and the
garbage made on purpose is gone."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.servers import Listener, eventually, kura_argv, running

pytestmark = pytest.mark.e2e

GRACE = 3.0  # seconds: pauses below are sometimes longer, so pushes do race the sweeps
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
HEADERS = {"content-type": OCI_MANIFEST}
SHARED = b"a base layer every image shares " * 64  # re-pushed by every client: deduplicated commits


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    repo: str
    tag: str
    blobs: dict[str, bytes]
    manifest: bytes


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: list[Image] = field(default_factory=list)
    retries: int = 0  # MANIFEST_BLOB_UNKNOWN answers: a sweep took a blob the client had paused on
    mounts: int = 0
    pulls: int = 0
    pull_failures: list[str] = field(default_factory=list)


def make_image(repo: str, tag: str, rng: random.Random) -> Image:
    own = rng.randbytes(rng.randint(100, 20_000))
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    blobs = {sha256(b): b for b in (SHARED, own, config)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b), "size": len(b)}
                for b in (SHARED, own)
            ],
        }
    ).encode()
    return Image(repo, tag, blobs, manifest)


def upload(client: httpx.Client, repo: str, data: bytes) -> None:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = client.put(r.headers["location"], params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201, r.text


def pusher(url: str, number: int, images: int, tally: Tally) -> None:
    rng = random.Random(number)
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(images):
            repo = f"gc/p{number}"
            image = make_image(repo, f"t{i}", rng)
            if i and rng.random() < 0.3:  # mount the shared layer from a sibling, as docker does
                r = client.post(
                    f"/v2/{repo}/blobs/uploads/", params={"mount": sha256(SHARED), "from": f"gc/p{(number + 1) % 6}"}
                )
                if r.status_code == 201:
                    with tally.lock:
                        tally.mounts += 1
            for data in image.blobs.values():
                if client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code != 200:
                    upload(client, repo, data)
            time.sleep(rng.choice([0.0, 0.2, 1.0, GRACE * 1.5, GRACE * 2.5]))  # the pause
            for _ in range(10):
                r = client.put(
                    f"/v2/{repo}/manifests/{image.tag}", content=image.manifest, headers={"content-type": OCI_MANIFEST}
                )
                if r.status_code == 201:
                    with tally.lock:
                        tally.acknowledged.append(image)
                    break
                assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
                with tally.lock:
                    tally.retries += 1
                for data in image.blobs.values():  # what a client does on that error: push what is missing
                    if client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code != 200:
                        upload(client, repo, data)
            else:
                raise AssertionError(f"{repo}:{image.tag} never accepted")


def puller(url: str, tally: Tally, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            with tally.lock:
                done = list(tally.acknowledged)
            if not done:
                time.sleep(0.05)
                continue
            image = random.choice(done)
            problem = check(client, image)
            with tally.lock:
                tally.pulls += 1
                if problem:
                    tally.pull_failures.append(problem)


def check(client: httpx.Client, image: Image) -> str | None:
    """None when the image pulls back byte-identical, else what is wrong."""
    r = client.get(f"/v2/{image.repo}/manifests/{image.tag}", headers={"accept": OCI_MANIFEST})
    if r.status_code != 200 or r.content != image.manifest:
        return f"{image.repo}:{image.tag} manifest {r.status_code}"
    for digest, data in image.blobs.items():
        b = client.get(f"/v2/{image.repo}/blobs/{digest}")
        if b.status_code != 200 or b.content != data:
            return f"{image.repo}:{image.tag} blob {digest} {b.status_code}"
    return None


def test_online_gc_under_concurrent_pushes_and_pulls(tmp_path: object, listener: Listener) -> None:
    root = os.path.join(str(tmp_path), "root")
    env = dict(
        os.environ,
        REGISTRY_STORAGE_DELETE_ENABLED="true",
        REGISTRY_KURA_GC_ENABLED="true",
        REGISTRY_KURA_GC_INTERVAL="0.5s",
        REGISTRY_KURA_GC_GRACE=f"{GRACE}s",
        REGISTRY_KURA_GC_DELETEUNTAGGED="true",
        REGISTRY_KURA_GC_TRASHDELAY="1s",
    )
    log = os.path.join(str(tmp_path), "kura.log")
    tally = Tally()
    server = running(kura_argv(root, listener, "--workers", "2"), f"http://127.0.0.1:{listener.port}", log, env)
    with server as url, httpx.Client(base_url=url, timeout=60) as client:
        # Garbage on purpose: blobs nothing references, an untagged manifest, an overwritten tag.
        garbage = [os.urandom(5000) for _ in range(5)]
        for data in garbage:
            upload(client, "gc/garbage", data)
        loose = make_image("gc/garbage", "loose", random.Random(99))
        for data in loose.blobs.values():
            upload(client, "gc/garbage", data)
        r = client.put(
            f"/v2/gc/garbage/manifests/{sha256(loose.manifest)}",
            content=loose.manifest,
            headers={"content-type": OCI_MANIFEST},
        )
        assert r.status_code == 201
        overwritten = [make_image("gc/garbage", "over", random.Random(seed)) for seed in (101, 102)]
        for image in overwritten:
            for data in image.blobs.values():
                upload(client, "gc/garbage", data)
            r = client.put("/v2/gc/garbage/manifests/over", content=image.manifest, headers=HEADERS)
            assert r.status_code == 201

        threads = [threading.Thread(target=pusher, args=(url, n, 8, tally)) for n in range(6)]
        pull_stop = threading.Event()
        pullers = [threading.Thread(target=puller, args=(url, tally, pull_stop)) for _ in range(2)]
        for t in threads + pullers:
            t.start()
        for t in threads:
            t.join()
        pull_stop.set()
        for t in pullers:
            t.join()

        # Looked for on disk: a HEAD is an observation, which would keep the garbage alive.
        assert eventually(lambda: not any(_stored(root, sha256(d)) for d in garbage), timeout=60)
        assert eventually(lambda: not _stored(root, sha256(loose.manifest)), timeout=60)
        assert eventually(lambda: not _stored(root, sha256(overwritten[0].manifest)), timeout=60)
        assert check(client, overwritten[1]) is None
        assert client.head(f"/v2/gc/garbage/blobs/{sha256(garbage[0])}").status_code == 404
        failures = [p for image in tally.acknowledged if (p := check(client, image))]
        checked = _last_start(root)
        assert eventually(lambda: _last_start(root) > checked, timeout=30)
        failures += [p for image in tally.acknowledged if (p := check(client, image))]  # after yet another run

    with open(os.path.join(root, "kura", "gc", "state.json")) as f:
        state = json.load(f)
    totals = state["totals"]
    print(
        f"\nonline GC: {len(tally.acknowledged)} images acknowledged and verified, {tally.retries} "
        f"MANIFEST_BLOB_UNKNOWN retries, {tally.mounts} mounts, {tally.pulls} pulls during GC; "
        f"{totals['runs']} GC runs freed {totals['bytes_freed']} bytes ({totals['blobs_deleted']} blobs, "
        f"{totals['manifests_deleted']} manifests), generation {state['generation']}",
        file=sys.stderr,
    )
    assert tally.pull_failures == [] and failures == []
    assert len(tally.acknowledged) == 48
    assert state["generation"] > 0


def _stored(root: str, digest: str) -> bool:
    hex_ = digest.split(":", 1)[1]
    return os.path.exists(os.path.join(root, "docker/registry/v2/blobs/sha256", hex_[:2], hex_, "data"))


def _last_start(root: str) -> int:
    try:
        with open(os.path.join(root, "kura", "gc", "state.json")) as f:
            return int(json.load(f)["runs"][-1]["started_ns"])
    except (OSError, ValueError, IndexError):
        return 0
