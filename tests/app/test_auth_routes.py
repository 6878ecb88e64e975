"""Every route x {no credentials, bad, wrong scope, right}, under htpasswd (Basic) and under tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from app.auth.access import KINDS, AccessMap, Kind
from app.main import create_app
from app.routes import ROUTES
from app.ui import routes as ui
from tests.app.authworld import PASSWORDS, POLICIES, REALM, TOKEN_REALM, World, client_for, htpasswd_settings, seed
from tests.app.authworld import token_settings as make_token_settings
from tests.authkit import CA, CATALOG, SERVICE, basic, bearer, repository
from tests.oci import sha256


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # {manifest}, {layer}, {upload} are filled in from the seeded world
    ok: int
    kind: Kind
    body: str = ""  # "manifest" or "chunk"


CHUNK = b"abc"
CASES = [
    Case("version", "GET", "/v2/", 200, Kind.IDENTITY),
    Case("catalog", "GET", "/v2/_catalog", 200, Kind.CATALOG),
    Case("tags", "GET", "/v2/team/app/tags/list", 200, Kind.PULL),
    Case("manifest-get", "GET", "/v2/team/app/manifests/v1", 200, Kind.PULL),
    Case("manifest-head", "HEAD", "/v2/team/app/manifests/{manifest}", 200, Kind.PULL),
    Case("manifest-put", "PUT", "/v2/team/app/manifests/v2", 201, Kind.PUSH, "manifest"),
    Case("manifest-delete", "DELETE", "/v2/team/app/manifests/{manifest}", 202, Kind.DELETE),
    Case("upload-start", "POST", "/v2/team/app/blobs/uploads/", 202, Kind.PUSH),
    Case("upload-status", "GET", "/v2/team/app/blobs/uploads/{upload}", 204, Kind.PUSH),
    Case("upload-patch", "PATCH", "/v2/team/app/blobs/uploads/{upload}", 202, Kind.PUSH, "chunk"),
    Case("upload-finish", "PUT", "/v2/team/app/blobs/uploads/{upload}?digest={chunk}", 201, Kind.PUSH, "chunk"),
    Case("upload-cancel", "DELETE", "/v2/team/app/blobs/uploads/{upload}", 204, Kind.PUSH),
    Case("blob-get", "GET", "/v2/team/app/blobs/{layer}", 200, Kind.PULL),
    Case("blob-head", "HEAD", "/v2/team/app/blobs/{layer}", 200, Kind.PULL),
    Case("blob-delete", "DELETE", "/v2/team/app/blobs/{layer}", 202, Kind.DELETE),
    Case("referrers", "GET", "/v2/team/app/referrers/{manifest}", 200, Kind.PULL),
    Case("inspect", "GET", "/_kura/v1/inspect/team/app/manifests/v1", 200, Kind.PULL),
    Case("live", "GET", "/_kura/v1/live", 200, Kind.OPEN),  # container health checks carry no credentials
]


def test_the_cases_cover_every_route() -> None:
    """A new route must get an access rule and a row here; the map refuses a route it does not know."""
    access = AccessMap(ROUTES)
    sample = {"manifest": "sha256:" + "a" * 64, "layer": "sha256:" + "b" * 64, "upload": "u", "chunk": sha256(CHUNK)}
    covered = set()
    for case in CASES:
        path = case.path.format(**sample).split("?")[0]
        assert access.need(case.method, path).kind is case.kind, case.id
        for route in ROUTES:
            match, _ = route.matches({"type": "http", "path": path, "method": case.method})
            if match.name == "FULL":
                covered.add(route.endpoint)
                break
    assert covered == {route.endpoint for route in ROUTES}
    # The web UI's routes are open to the middleware (the UI checks the policies itself: tests/app/test_ui_auth.py).
    assert set(KINDS) == covered | {route.endpoint for route in ui.ROUTES}


def test_a_route_without_an_access_rule_stops_the_server() -> None:
    """Fail closed: a route added later (a UI, an API) must be classified before Kura starts."""

    async def page(request: Any) -> None:
        pass

    with pytest.raises(RuntimeError, match="no access rule"):
        AccessMap([*ROUTES, Route("/ui/", page)])


async def send(client: httpx.AsyncClient, case: Case, world: World, headers: dict[str, str]) -> httpx.Response:
    path = case.path.format(manifest=world.image.digest, layer=world.layer, upload=world.upload, chunk=sha256(CHUNK))
    content = {"manifest": world.image.manifest, "chunk": CHUNK, "": b""}[case.body]
    if case.body == "manifest":
        headers = headers | {"Content-Type": world.image.media_type}
    return await client.request(case.method, path, content=content, headers=headers)


def scope_of(case: Case) -> str:
    return {
        Kind.OPEN: "",
        Kind.IDENTITY: "",
        Kind.CATALOG: "registry:catalog:*",
        Kind.PULL: "repository:team/app:pull",
        Kind.PUSH: "repository:team/app:pull,push",
        Kind.DELETE: "repository:team/app:delete",
    }[case.kind]


# -- htpasswd ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("who", ["none", "bad", "wrong", "right"])
async def test_basic(root: str, tmp_path: Path, case: Case, who: str) -> None:
    world = await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path), POLICIES))
    # bob may only pull team/**; dave may do nothing there
    wrong = "dave" if case.kind is Kind.PULL else "bob"
    headers = {
        "none": {},
        "bad": basic("alice", "not-her-password"),
        "wrong": basic(wrong, PASSWORDS[wrong]),
        "right": basic("alice", PASSWORDS["alice"]),
    }[who]
    if who == "wrong" and case.kind in (Kind.IDENTITY, Kind.CATALOG):
        pytest.skip("every authenticated user may ping /v2/ and list the catalog (filtered)")
    async with client_for(app) as client:
        r = await send(client, case, world, headers)
    if case.kind is Kind.OPEN:
        assert r.status_code == case.ok, r.text
        return
    if who in ("none", "bad"):
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == f'Basic realm="{REALM}"'
        assert case.method == "HEAD" or r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    elif who == "wrong":
        assert r.status_code == 403, r.text
        assert "www-authenticate" not in r.headers
        if case.method != "HEAD":
            assert r.json()["errors"][0]["code"] == "DENIED"
    else:
        assert r.status_code == case.ok, r.text


# -- bearer tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("who", ["none", "bad", "wrong", "right"])
async def test_bearer(root: str, tmp_path: Path, case: Case, who: str) -> None:
    world = await seed(root)
    ca = CA()
    app = create_app(make_token_settings(root, str(tmp_path), ca))
    signer = ca.leaf()
    if who == "wrong" and case.kind is Kind.IDENTITY:
        pytest.skip("any valid token may ping /v2/")
    token = {
        "none": None,
        "bad": "not.a.token",
        "wrong": signer.token([repository("other/app", "*"), repository("team/app", "pull")]),
        "right": signer.token([repository("team/app", "pull", "push", "delete"), CATALOG]),
    }[who]
    if who == "wrong" and case.kind is Kind.PULL:
        token = signer.token([repository("other/app", "*")])
    async with client_for(app) as client:
        r = await send(client, case, world, bearer(token) if token else {})
    if who == "right" or case.kind is Kind.OPEN:
        assert r.status_code == case.ok, r.text
        return
    assert r.status_code == 401, r.text
    expected = f'Bearer realm="{TOKEN_REALM}",service="{SERVICE}"'
    if scope_of(case):
        expected += f',scope="{scope_of(case)}"'
    expected += {"none": "", "bad": ',error="invalid_token"', "wrong": ',error="insufficient_scope"'}[who]
    assert r.headers["www-authenticate"] == expected
