"""The hot lane answers exactly as the whole stack does: same route, same bytes, same log line, same metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Match

from app.hotroutes import HotLane, hot_routes
from app.logs import FIELDS
from app.main import create_app
from app.routes import ROUTES
from storage import paths
from storage.digest import Digest
from storage.gc import touch
from tests.app.authworld import client_for, htpasswd_settings, seed
from tests.authkit import basic
from tests.conftest import client_of
from tests.oci import push_image, random_image

Exchange = tuple[int, list[tuple[bytes, bytes]], bytes]
UNKNOWN = "sha256:" + "0" * 64


def _router_match(method: str, path: str) -> tuple[Any, dict[str, Any]] | None:
    """What Starlette's router picks: the first route that matches fully."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in ROUTES:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return child["endpoint"], child["path_params"]
    return None


PATHS = [
    "/v2/a/manifests/latest",
    "/v2/a/b/c/manifests/sha256:" + "a" * 64,
    "/v2/a/manifests/manifests/x",
    "/v2/manifests/manifests/x",
    "/v2/a/tags/list",
    "/v2/a/manifests/tags/list",
    "/v2/a/tags/list/manifests/x",
    "/v2/a/blobs/sha256:abc",
    "/v2/a/blobs/uploads/",
    "/v2/a/blobs/uploads/123",
    "/v2/a/blobs/uploads/blobs/123",
    "/v2/a/blobs/uploads",
    "/v2/blobs/uploads/x",
    "/v2/a/blobs/",
    "/v2/a/manifests/",
    "/v2//manifests/x",
    "/v2/a/referrers/sha256:abc",
    "/v2/_catalog",
    "/v2/",
    "/_kura/v1/inspect/a/manifests/latest",
    "/_kura/v1/live",
    "/v2/a/manifests/x/y",
    "/v3/a/manifests/x",
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH"])
def test_hot_match_is_the_routers_match(method: str) -> None:
    """For every path shape the table knows (and some it does not), the hot route is taken exactly when
    the router would pick that very endpoint, with the same parameters."""
    table = hot_routes(ROUTES)
    for path in PATHS:
        routed = _router_match(method, path)
        hot = next(((r.endpoint, p) for r in table if (p := r.match(method, path)) is not None), None)
        if hot is not None:
            assert routed == hot, (method, path)
        else:
            assert routed is None or routed[0] not in {r.endpoint for r in table}, (method, path)


async def _exchanges(client: httpx.AsyncClient, requests: list[tuple[str, str, dict[str, str]]]) -> list[Exchange]:
    found = []
    for method, url, headers in requests:
        r = await client.request(method, url, headers=headers)
        found.append((r.status_code, list(r.headers.raw), r.content))
    return found


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = []
    for record in caplog.records:
        if record.name == "kura.access":
            fields = dict(getattr(record, FIELDS))
            fields.pop("http.response.duration")
            lines.append(fields)
    caplog.clear()
    return lines


async def _both_paths(
    client: httpx.AsyncClient,
    requests: list[tuple[str, str, dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> tuple[list[Exchange], list[Exchange], int]:
    """The answers with the hot lane, without it, and how many requests the lane answered itself."""
    caplog.set_level(logging.INFO, logger="kura.access")
    caplog.clear()  # the lines of the set-up's requests, when an earlier test left the access log at INFO
    answered: list[str] = []
    real = HotLane.answer

    async def counted(self: HotLane, scope: dict[str, Any], receive: Any, send: Any) -> bool:
        done = await real(self, scope, receive, send)
        if done:
            answered.append(scope["path"])
        return done

    monkeypatch.setattr(HotLane, "answer", counted)
    hot = await _exchanges(client, requests)
    hot_log = _access_lines(caplog)
    monkeypatch.setattr(HotLane, "match", lambda self, scope: None)
    routed = await _exchanges(client, requests)
    assert _access_lines(caplog) == hot_log
    return hot, routed, len(answered)


async def test_hot_responses_are_the_routers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings_dict = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}, "delete": {"enabled": True}}}
    from app.config import Settings

    application = create_app(Settings.model_validate(settings_dict))
    async with client_of(application) as client:
        image = random_image(seed=11)
        digest = await push_image(client, "team/app", image, "v1")
        layer = next(iter(image.blobs))
        requests = [
            ("GET", "/v2/team/app/manifests/v1", {"Accept": "application/vnd.oci.image.manifest.v1+json"}),
            ("HEAD", "/v2/team/app/manifests/v1", {}),
            ("GET", f"/v2/team/app/manifests/{digest}", {}),
            ("HEAD", f"/v2/team/app/manifests/{digest}", {}),
            ("GET", "/v2/team/app/manifests/nope", {}),  # unknown tag
            ("HEAD", f"/v2/team/app/manifests/{UNKNOWN}", {}),  # unknown digest
            ("GET", "/v2/team/app/manifests/sha256:short", {}),  # neither tag nor digest
            ("GET", "/v2/no/such/manifests/v1", {}),  # unknown repository
            ("GET", "/v2/Bad_Name/manifests/v1", {}),  # invalid name
            ("HEAD", f"/v2/team/app/blobs/{layer}", {}),
            ("GET", f"/v2/team/app/blobs/{layer}", {}),
            ("GET", f"/v2/team/app/blobs/{layer}", {"Range": "bytes=10-99"}),
            ("GET", f"/v2/team/app/blobs/{layer}", {"Range": "bytes=999999-"}),  # unsatisfiable
            ("HEAD", f"/v2/team/app/blobs/{UNKNOWN}", {}),  # unknown blob
            ("HEAD", "/v2/team/app/blobs/sha256:xyz", {}),  # bad digest
            ("GET", "/v2/team/app/blobs/md5:abc", {}),  # unsupported algorithm
            ("HEAD", f"/v2/other/blobs/{layer}", {}),  # a blob this repository does not link
            ("GET", f"/v2/team/app/blobs/{layer}", {"If-None-Match": f'"{layer}"'}),  # 304
            ("HEAD", f"/v2/team/app/manifests/{digest}", {"If-None-Match": digest}),  # 304
            ("GET", f"/v2/team/app/blobs/{layer}", {"Range": "bytes=1-2", "If-Range": '"x"'}),  # whole: 200
            ("GET", "/v2/team/app/tags/list", {}),
            ("GET", "/v2/team/app/tags/list?n=1", {}),  # a page with its Link
            ("GET", "/v2/team/app/tags/list?n=1&last=v1", {}),  # past the end
            ("GET", "/v2/team/app/tags/list?n=-1", {}),  # invalid n
            ("GET", "/v2/no/such/tags/list", {}),  # unknown repository
        ]
        hot, routed, served = await _both_paths(client, requests, monkeypatch, caplog)
    statuses = [status for status, _, _ in hot]
    assert hot == routed and served == sum(status < 400 for status in statuses)  # errors: the full stack
    manifests_and_blobs = [200, 200, 200, 200, 404, 404, 404, 404, 400, 200, 200, 206, 416, 404, 400, 400, 404]
    manifests_and_blobs += [304, 304, 200]
    assert statuses == [*manifests_and_blobs, 200, 200, 200, 400, 404]


async def test_a_read_that_waits_out_a_held_stripe_is_answered_after_one_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue: a blob read that touches a stale blob under its stripe, held by a stuck collector,
    waited LOCK_WAIT in the lane, which then left the request to the full stack, which waited as
    long again before its 503. Now the lane answers that 503 itself, as the full stack does."""
    from app.config import Settings

    root = tmp_path / "root"
    application = create_app(Settings.model_validate({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
    monkeypatch.setattr(touch, "LOCK_WAIT", 0.2)
    waits: list[Digest] = []
    held = touch.Observer.held

    def counted(self: touch.Observer, digest: Digest) -> Any:
        waits.append(digest)
        return held(self, digest)

    monkeypatch.setattr(touch.Observer, "held", counted)
    async with client_of(application) as client:
        image = random_image(seed=12)
        await push_image(client, "team/app", image, "v1")
        layer = Digest.parse(next(iter(image.blobs)))
        os.utime(root / paths.blob_data(layer), (1, 1))  # stale: a read must touch it under its stripe
        driver = application.state.registry.driver
        waits.clear()  # the push's own
        requests: list[tuple[str, str, dict[str, str]]] = [
            ("HEAD", f"/v2/team/app/blobs/{layer}", {}),
            ("GET", f"/v2/team/app/blobs/{layer}", {}),
        ]
        async with driver.lock(touch.stripe(layer), shared=False, create=True):  # the stuck collector's
            hot, routed, served = await _both_paths(client, requests, monkeypatch, caplog)
        assert waits == [layer] * 4  # one wait per request, with the lane and without it
        assert hot == routed and served == 2
        for status, headers, _ in hot:
            assert status == 503 and (b"retry-after", b"1") in headers and (b"connection", b"close") in headers
        assert (await client.head(f"/v2/team/app/blobs/{layer}")).status_code == 200  # released: served


async def test_hot_responses_under_auth_are_the_routers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = str(tmp_path / "root")
    world = await seed(root)
    policies = {"repositories": {"team/**": {"policies": [{"users": ["alice"], "actions": ["pull"]}]}}}
    application = create_app(htpasswd_settings(root, str(tmp_path), policies))
    async with client_for(application) as client:
        alice, bob = basic("alice", "alice-secret"), basic("bob", "bob-secret")
        requests = [
            ("GET", "/v2/team/app/manifests/v1", alice),
            ("HEAD", f"/v2/team/app/blobs/{world.layer}", alice),
            ("GET", "/v2/team/app/manifests/v1", {}),  # no credentials: the challenge
            ("GET", "/v2/team/app/manifests/v1", bob),  # authenticated, no right: denied
            ("HEAD", f"/v2/other/app/blobs/{world.layer}", alice),  # outside alice's repositories
            ("GET", "/v2/team/app/manifests/v1", basic("alice", "wrong")),  # bad password
            ("GET", "/v2/team/nothing/manifests/v1", alice),  # allowed, unknown
            ("GET", "/v2/team/app/tags/list", alice),
            ("GET", "/v2/other/app/tags/list", alice),  # outside alice's repositories
            ("GET", "/v2/team/app/tags/list", bob),  # no right
        ]
        hot, routed, served = await _both_paths(client, requests, monkeypatch, caplog)
    # alice's first request checks her password in the full stack; the lane answers her second. The
    # others are answered by auth (refusals) or by the full stack (the 404).
    assert hot == routed and served == 2
    assert [status for status, _, _ in hot] == [200, 200, 401, 403, 403, 401, 404, 200, 403, 403]


def _http_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of Kura's HTTP families but the durations (which differ between any two runs)."""
    from app import metrics

    found = {}
    for family in metrics.REGISTRY.collect():
        if not family.name.startswith(("registry_http", "kura_")) or "duration" in family.name:
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue  # when a child was first made: the first run makes them
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _delta(
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}


async def test_the_lane_counts_the_metrics_the_stack_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.app.test_observability import make_settings

    application = create_app(make_settings(str(tmp_path / "root")))
    async with client_of(application) as client:
        image = random_image(seed=12)
        digest = await push_image(client, "team/app", image, "v1")
        layer = next(iter(image.blobs))
        requests = [
            ("GET", "/v2/team/app/manifests/v1", {}),
            ("HEAD", f"/v2/team/app/manifests/{digest}", {}),
            ("HEAD", f"/v2/team/app/blobs/{layer}", {}),
            ("GET", f"/v2/team/app/blobs/{layer}", {}),
            ("GET", f"/v2/team/app/blobs/{layer}", {"Range": "bytes=1-9"}),
            ("GET", "/v2/team/app/manifests/nope", {}),
        ]
        start = _http_samples()
        hot = await _exchanges(client, requests)
        middle = _http_samples()
        monkeypatch.setattr(HotLane, "match", lambda self, scope: None)
        routed = await _exchanges(client, requests)
        end = _http_samples()
    assert hot == routed
    counted = _delta(middle, start)
    assert counted == _delta(end, middle)
    pulled = sum(len(body) for status, _, body in hot if status < 300 and status != 204)
    assert (
        counted[("kura_bytes_pulled_total", (("type", "blob"),))]
        + counted[("kura_bytes_pulled_total", (("type", "manifest"),))]
        == pulled
    )
    in_flight = {key: value for key, value in end.items() if key[0] == "registry_http_in_flight_requests"}
    assert set(in_flight.values()) == {0.0}  # each request left the gauge as it found it


def _remove_user(path: str, user: str) -> None:
    subprocess.run(["htpasswd", "-D", path, user], check=True, capture_output=True)  # Apache's own tool


async def test_the_lane_sees_an_edited_htpasswd_file_at_once(tmp_path: Path) -> None:
    """A password remembered by the full stack lets the lane answer; removing the user ends that with
    the next request, as it does for the full stack."""
    root = str(tmp_path / "root")
    world = await seed(root)
    policies = {"repositories": {"team/**": {"policies": [{"users": ["alice"], "actions": ["pull"]}]}}}
    settings = htpasswd_settings(root, str(tmp_path), policies)
    answered: list[bool] = []
    application = create_app(settings)
    assert application.lane is not None
    lane = application.lane
    real = lane.answer

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> bool:
        answered.append(await real(scope, receive, send))
        return answered[-1]

    lane.answer = counted  # type: ignore[method-assign,assignment]
    async with client_for(application) as client:
        alice = basic("alice", "alice-secret")
        url = f"/v2/team/app/blobs/{world.layer}"
        assert [(await client.head(url, headers=alice)).status_code for _ in range(2)] == [200, 200]
        assert answered == [False, True]  # bcrypt in the full stack, then the lane
        _remove_user(str(tmp_path / "htpasswd"), "alice")
        await asyncio.sleep(0)  # the loop turns between two requests on a server (not always in httpx's transport)
        r = await client.head(url, headers=alice)
    assert r.status_code == 401 and answered[-1] is False


async def test_the_lane_leaves_a_failing_health_check_to_the_gate(tmp_path: Path) -> None:
    from app.config import Settings

    root = str(tmp_path / "root")
    world = await seed(root)
    health = {"storagedriver": {"enabled": True, "interval": "1h", "threshold": 1}}
    settings = Settings.model_validate({"storage": {"filesystem": {"rootdirectory": root}}, "health": health})
    application = create_app(settings)
    async with client_for(application) as client:
        url = f"/v2/team/app/blobs/{world.layer}"
        assert (await client.head(url)).status_code == 200
        application.state.health.checks[0].update("filesystem: broken")
        r = await client.get("/v2/team/app/manifests/v1")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert (await client.head(url)).status_code == 503
        application.state.health.checks[0].update(None)
        assert (await client.head(url)).status_code == 200


async def test_hot_responses_under_tokens_are_the_routers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A token verified once lets the lane answer its later pulls; an expired, foreign or narrower
    token is left to the middleware, whose challenge is the same either way."""
    from tests.app.authworld import token_settings
    from tests.authkit import CA, bearer, repository

    root = str(tmp_path / "root")
    world = await seed(root)
    ca = CA()
    signer = ca.leaf()
    application = create_app(token_settings(root, str(tmp_path), ca))
    async with client_for(application) as client:
        token = bearer(signer.token([repository("team/app", "pull")]))
        requests = [
            ("GET", "/v2/team/app/manifests/v1", token),  # verified by the middleware
            ("HEAD", f"/v2/team/app/blobs/{world.layer}", token),  # remembered: the lane
            ("GET", "/v2/other/app/manifests/v1", token),  # outside the token: insufficient_scope
            ("GET", "/v2/team/app/manifests/v1", bearer(signer.token([repository("team/app", "pull")], lifetime=-60))),
            ("GET", "/v2/team/app/manifests/v1", bearer(CA().leaf().token([repository("team/app", "pull")]))),
            ("GET", "/v2/team/app/manifests/v1", {}),
        ]
        hot, routed, served = await _both_paths(client, requests, monkeypatch, caplog)
    assert hot == routed and served == 1
    assert [status for status, _, _ in hot] == [200, 200, 401, 401, 401, 401]
