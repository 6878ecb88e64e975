"""Which requests spool which registry:2 events, field for field (read back from the spool itself)."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.notify.event import envelope, references
from storage import Spool
from storage.driver import PathNotFound
from tests.conftest import client_of, started
from tests.oci import OCI_INDEX, OCI_MANIFEST, index_of, push_blob, push_image, random_image, sha256

BLOB = "application/octet-stream"
BASE = "http://registry.test"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def configure(settings: Settings, *endpoints: dict[str, Any], references: bool = False) -> Settings:
    document = settings.model_dump(mode="json")
    document["notifications"] = {"events": {"includereferences": references}, "endpoints": list(endpoints)}
    return Settings.model_validate(document)


async def spooled(app: Starlette, endpoint: str = "hook") -> list[dict[str, Any]]:
    """The endpoint's spool, read through the app's own storage driver."""
    spool = Spool.of_endpoint(app.state.registry.driver, endpoint)
    return [json.loads(await spool.read(e) or b"") for e in await spool.pending()]


async def has_spool(app: Starlette, endpoint: str) -> bool:
    try:
        await app.state.registry.driver.list(f"kura/notifications/{endpoint}")
    except PathNotFound:
        return False
    return True


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(e["action"], e["target"].get("digest"), e["target"].get("tag")) for e in events]


@pytest.fixture
def notified(settings: Settings) -> Settings:
    return configure(settings, {"name": "hook", "url": "http://127.0.0.1:9/events"})


class AsUser:
    """What the auth layer does for a verified user: it puts the name in the scope."""

    def __init__(self, app: ASGIApp, user: str) -> None:
        self.app, self.user = app, user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["kura.user"] = self.user
        await self.app(scope, receive, send)


@pytest.fixture
async def app(notified: Settings) -> AsyncIterator[Starlette]:
    async with started(notified) as application:
        yield application


@asynccontextmanager
async def wrapped(app: ASGIApp, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` as wrapped by middleware (client_of takes the bare app only)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, **options) as c:
        yield c


async def test_a_pushed_image_spools_blob_then_manifest_pushes_with_every_field(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    image = random_image(seed=1)
    digest = await push_image(client, "team/app", image, "v1")
    events = await spooled(app)
    assert brief(events) == [("push", d, None) for d in image.blobs] + [("push", digest, "v1")]
    for event, (blob, data) in zip(events, image.blobs.items(), strict=False):
        assert event["target"] == {
            "mediaType": BLOB,
            "size": len(data),
            "digest": blob,
            "length": len(data),
            "repository": "team/app",
            "url": f"{BASE}/v2/team/app/blobs/{blob}",
        }
    manifest = events[-1]
    assert list(manifest) == ["id", "timestamp", "action", "target", "request", "actor", "source"]
    assert UUID.fullmatch(manifest["id"]) and TIMESTAMP.fullmatch(manifest["timestamp"])
    assert manifest["target"] == {
        "mediaType": OCI_MANIFEST,
        "size": len(image.manifest),
        "digest": digest,
        "length": len(image.manifest),
        "repository": "team/app",
        "url": f"{BASE}/v2/team/app/manifests/{digest}",  # by digest even for a tag push
        "tag": "v1",
    }
    request = manifest["request"]
    assert list(request) == ["id", "addr", "host", "method", "useragent"]
    assert UUID.fullmatch(request["id"])
    assert request["addr"] == "127.0.0.1:123"  # httpx's ASGITransport client address
    assert (request["host"], request["method"]) == ("registry.test", "PUT")
    assert request["useragent"].startswith("python-httpx/")
    assert manifest["actor"] == {}
    assert manifest["source"]["addr"] == f"{socket.gethostname()}:5000"
    assert UUID.fullmatch(manifest["source"]["instanceID"])
    assert len({e["id"] for e in events}) == len(events)
    assert len({e["request"]["id"] for e in events}) == len(events)  # one request each


@pytest.mark.parametrize("mode", ["monolithic", "post", "chunked", "stream"])
async def test_each_upload_mode_is_one_push_at_commit(client: httpx.AsyncClient, app: Starlette, mode: str) -> None:
    data = os.urandom(3000)
    digest = await push_blob(client, "r", data, mode)  # type: ignore[arg-type]
    events = await spooled(app)
    assert brief(events) == [("push", digest, None)]
    assert events[0]["request"]["method"] == ("POST" if mode == "post" else "PUT")


async def test_pulls_by_tag_digest_head_and_range(client: httpx.AsyncClient, app: Starlette) -> None:
    """GET and HEAD are both pulls, as in registry:2 (both run GetManifest / ServeBlob)."""
    image = random_image(seed=2, layers=1)
    digest = await push_image(client, "r", image, "latest")
    layer = sha256(image.layers[0])
    pushed = len(await spooled(app))
    assert (await client.get("/v2/r/manifests/latest")).status_code == 200
    assert (await client.get(f"/v2/r/manifests/{digest}")).status_code == 200
    assert (await client.head("/v2/r/manifests/latest")).status_code == 200
    assert (await client.get(f"/v2/r/blobs/{layer}")).status_code == 200
    assert (await client.head(f"/v2/r/blobs/{layer}")).status_code == 200
    assert (await client.get(f"/v2/r/blobs/{layer}", headers={"Range": "bytes=0-9"})).status_code == 206
    events = (await spooled(app))[pushed:]
    assert brief(events) == [
        ("pull", digest, "latest"),
        ("pull", digest, None),
        ("pull", digest, "latest"),
        ("pull", layer, None),
        ("pull", layer, None),
        ("pull", layer, None),
    ]
    assert [e["request"]["method"] for e in events] == ["GET", "GET", "HEAD", "GET", "HEAD", "GET"]
    assert events[3]["target"]["size"] == len(image.layers[0])  # the blob's size, not the range's
    assert events[0]["target"]["mediaType"] == OCI_MANIFEST


async def test_failures_make_no_events(client: httpx.AsyncClient, app: Starlette) -> None:
    """Only what happened is reported: 4xx answers spool nothing."""
    assert (await client.get("/v2/r/manifests/missing")).status_code == 404
    assert (await client.head(f"/v2/r/blobs/{sha256(b'x')}")).status_code == 404
    r = await client.post("/v2/r/blobs/uploads/", params={"digest": sha256(b"other")}, content=b"data")
    assert r.status_code == 400
    r = await client.put("/v2/r/manifests/t", content=b"{}", headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    assert (await client.delete(f"/v2/r/blobs/{sha256(b'x')}")).status_code == 404
    assert (await spooled(app)) == []


async def test_mounts_name_where_the_blob_came_from(client: httpx.AsyncClient, app: Starlette) -> None:
    data = os.urandom(500)
    digest = await push_blob(client, "src", data)
    r = await client.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src"})
    assert r.status_code == 201
    r = await client.post("/v2/other/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201
    r = await client.post("/v2/dst/blobs/uploads/", params={"mount": sha256(b"absent"), "from": "src"})
    assert r.status_code == 202  # no mount happened: an upload session, and no event
    mounts = (await spooled(app))[1:]
    assert [e["action"] for e in mounts] == ["mount", "mount"]
    assert mounts[0]["target"] == {
        "mediaType": BLOB,
        "size": 500,
        "digest": digest,
        "length": 500,
        "repository": "dst",
        "fromRepository": "src",
        "url": f"{BASE}/v2/dst/blobs/{digest}",
    }
    assert "fromRepository" not in mounts[1]["target"] and mounts[1]["target"]["repository"] == "other"


async def test_deletes_carry_only_repository_and_digest_or_tag(client: httpx.AsyncClient, app: Starlette) -> None:
    image = random_image(seed=3, layers=1)
    digest = await push_image(client, "r", image, "a")
    r = await client.put("/v2/r/manifests/b", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    other = await push_image(client, "r", random_image(seed=4, layers=1), "c")
    layer = sha256(image.layers[0])
    before = len(await spooled(app))
    assert (await client.delete("/v2/r/manifests/c")).status_code == 202
    assert (await client.delete(f"/v2/r/manifests/{digest}")).status_code == 202
    assert (await client.delete(f"/v2/r/blobs/{layer}")).status_code == 202
    events = (await spooled(app))[before:]
    # Deleting a manifest by digest also deletes its tags, each with its own event (registry:2).
    assert [e["target"] for e in events] == [
        {"repository": "r", "tag": "c"},
        {"digest": digest, "repository": "r"},
        {"repository": "r", "tag": "a"},
        {"repository": "r", "tag": "b"},
        {"digest": layer, "repository": "r"},
    ]
    assert {e["action"] for e in events} == {"delete"}
    assert {e["request"]["method"] for e in events} == {"DELETE"}
    assert len({e["request"]["id"] for e in events[1:4]}) == 1  # one request, three events
    assert other not in {e["target"].get("digest") for e in events}


async def test_refused_deletes_make_no_events(settings: Settings) -> None:
    settings.storage.delete.enabled = False
    async with started(configure(settings, {"name": "hook", "url": "http://127.0.0.1:9/"})) as app:
        async with client_of(app) as c:
            digest = await push_image(c, "r", random_image(seed=5, layers=1), "t")
            before = await spooled(app)
            assert (await c.delete(f"/v2/r/manifests/{digest}")).status_code == 405
        assert await spooled(app) == before


async def test_includereferences_lists_config_and_layers_or_children(settings: Settings) -> None:
    image = random_image(seed=6, layers=2)
    configured = configure(settings, {"name": "hook", "url": "http://127.0.0.1:9/"}, references=True)
    async with started(configured) as app:
        async with client_of(app) as c:
            digest = await push_image(c, "r", image, None)
            index = index_of([image])
            r = await c.put("/v2/r/manifests/multi", content=index, headers={"Content-Type": OCI_INDEX})
            assert r.status_code == 201
        manifest_event, index_event = (await spooled(app))[-2:]
    document = json.loads(image.manifest)
    assert manifest_event["target"]["references"] == [document["config"], *document["layers"]]
    assert index_event["target"]["references"] == json.loads(index)["manifests"]
    assert index_event["target"]["references"][0]["digest"] == digest


async def test_filters_per_endpoint(settings: Settings) -> None:
    """ignore.actions and (ignore.mediatypes + ignoredmediatypes) filter each endpoint on its own."""
    configured = configure(
        settings,
        {"name": "all", "url": "http://127.0.0.1:9/"},
        {"name": "nopull", "url": "http://127.0.0.1:9/", "ignore": {"actions": ["pull"]}},
        {"name": "noblob", "url": "http://127.0.0.1:9/", "ignoredmediatypes": [BLOB]},
        {"name": "nomanifest", "url": "http://127.0.0.1:9/", "ignore": {"mediatypes": [OCI_MANIFEST]}},
        {"name": "off", "url": "http://127.0.0.1:9/", "disabled": True},
    )
    image = random_image(seed=7, layers=1)
    async with started(configured) as app:
        async with client_of(app) as c:
            digest = await push_image(c, "r", image, "t")
            assert (await c.get("/v2/r/manifests/t")).status_code == 200
        blobs = [("push", d, None) for d in image.blobs]
        assert brief(await spooled(app, "all")) == [*blobs, ("push", digest, "t"), ("pull", digest, "t")]
        assert brief(await spooled(app, "nopull")) == [*blobs, ("push", digest, "t")]
        assert brief(await spooled(app, "noblob")) == [("push", digest, "t"), ("pull", digest, "t")]
        assert brief(await spooled(app, "nomanifest")) == blobs
        assert not await has_spool(app, "off")


async def test_the_actor_is_the_verified_user_and_proxies_are_honoured(app: Starlette) -> None:
    headers = {
        "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
        "X-Forwarded-Host": "reg.example",
        "X-Forwarded-Proto": "https",
    }
    async with wrapped(AsUser(app, "alice"), headers=headers) as c:
        digest = await push_blob(c, "r", b"hello")
    event = (await spooled(app))[0]
    assert event["actor"] == {"name": "alice"}
    assert event["request"]["addr"] == "203.0.113.7"
    assert event["target"]["url"] == f"https://reg.example/v2/r/blobs/{digest}"


async def test_the_actor_may_come_from_the_auth_layers_principal(app: Starlette) -> None:
    @dataclass
    class Principal:
        name: str | None

    async def with_principal(scope: Scope, receive: Receive, send: Send) -> None:
        scope["kura.principal"] = Principal("bob")
        await app(scope, receive, send)

    async with wrapped(with_principal) as c:
        await push_blob(c, "r", b"hello")
    assert (await spooled(app))[0]["actor"] == {"name": "bob"}


async def test_basic_credentials_alone_name_no_actor(client: httpx.AsyncClient, app: Starlette) -> None:
    """registry:2 falls back to the unverified Basic user name; Kura names only a verified user."""
    r = await client.post("/v2/r/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x", auth=("mallory", "pw"))
    assert r.status_code == 201
    assert (await spooled(app))[0]["actor"] == {}


async def test_the_forwarded_header_wins_over_x_forwarded(app: Starlette) -> None:
    headers = {"Forwarded": 'for=192.0.2.1;Proto=https;host="reg.example:8443", for=10.0.0.1', "X-Forwarded-Host": "no"}
    async with wrapped(app, headers=headers) as c:
        digest = await push_blob(c, "r", b"hello")
    assert (await spooled(app))[0]["target"]["url"] == f"https://reg.example:8443/v2/r/blobs/{digest}"


async def test_http_host_sets_the_url(notified: Settings) -> None:
    notified.http.host = "https://registry.example.com/"
    async with started(notified) as app, client_of(app) as c:
        digest = await push_blob(c, "r", b"hello")
        assert (await spooled(app))[0]["target"]["url"] == f"https://registry.example.com/v2/r/blobs/{digest}"


async def test_no_endpoints_no_spool(settings: Settings) -> None:
    async with started(settings) as app, client_of(app) as c:
        await push_blob(c, "r", b"hello")
        assert app.state.notifier is None
        assert not await has_spool(app, "")


def test_the_envelope_is_one_event_indented_as_go_does() -> None:
    event = {"id": "x", "action": "push"}
    body = envelope(event)
    assert json.loads(body) == {"events": [event]}
    assert body.decode().splitlines()[:3] == ["{", '   "events": [', "      {"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"layers": null}', b'{"manifests": 3}', b"{}"])
def test_references_of_odd_stored_manifests_are_empty(body: bytes) -> None:
    """A manifest another server stored may be anything: listing its references never fails a pull."""
    assert references(body) == []
