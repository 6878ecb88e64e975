"""The built-in token server: GET with Basic, the OAuth2 POST form, refresh tokens, grants from policies."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.auth.htpasswd import Htpasswd
from app.auth.signer import CERT_FILE, KEY_FILE, load_or_create
from app.auth.tokenserver import parse_scope
from app.config import Settings
from app.main import create_app
from tests.app.authworld import PASSWORDS, base_settings, client_for, seed
from tests.authkit import basic, bearer, htpasswd
from tests.oci import random_image

SERVICE = "kura"
REALM = "http://registry.test/auth/token"
RULES: dict[str, Any] = {
    "admins": ["root"],
    "repositories": {
        "team/**": {"policies": [{"users": ["alice"], "actions": ["pull", "push"]}]},
        "rel/**": {"policies": [{"users": ["alice"], "actions": ["pull", "create"]}]},
        "public/**": {"anonymous": ["pull"]},
    },
}


def settings(root: str, tmp: Path, **server: Any) -> Settings:
    accounts = htpasswd(str(tmp / "htpasswd"), PASSWORDS)
    auth = {"token": {"realm": REALM, "service": SERVICE, "issuer": "kura-issuer"}}
    tokenserver = {"enabled": True, "htpasswd": accounts} | server
    return Settings.model_validate(base_settings(root, auth=auth, kura={"auth": RULES | {"tokenserver": tokenserver}}))


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def get_token(client: httpx.AsyncClient, *scopes: str, **params: str) -> httpx.Response:
    query: list[tuple[str, str | int | float | bool | None]] = [("service", SERVICE)]
    query += [("scope", s) for s in scopes] + list(params.items())
    return await client.get("/auth/token", params=query)


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("repository:team/app:pull,push", ("repository", "team/app", ["pull", "push"])),
        ("repository:localhost:5000/app:pull", ("repository", "localhost:5000/app", ["pull"])),
        ("repository(plugin):x:pull", ("repository", "x", ["pull"])),
        ("registry:catalog:*", ("registry", "catalog", ["*"])),
        ("nonsense", None),
    ],
)
def test_parse_scope(text: str, parsed: tuple[str, str, list[str]] | None) -> None:
    assert parse_scope(text) == parsed


async def test_get_grants_the_intersection(root: str, tmp_path: Path) -> None:
    await seed(root)
    app = create_app(settings(root, tmp_path))
    async with client_for(app) as client:
        client.headers.update(basic("alice", PASSWORDS["alice"]))
        r = await get_token(
            client, "repository:team/app:pull,push,delete", "repository:other/app:pull", "registry:catalog:*"
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token"] == body["access_token"] and body["expires_in"] == 300
        assert body["issued_at"].endswith("Z") and "refresh_token" not in body
        c = claims(body["token"])
        assert c["sub"] == "alice" and c["aud"] == SERVICE and c["iss"] == "kura-issuer"
        assert c["access"] == [
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]
        header = jwt.get_unverified_header(body["token"])
        assert header["alg"] == "ES256" and len(header["x5c"]) == 1 and header["kid"].count(":") == 11
        # The token works on the registry.
        r = await client.get("/v2/team/app/tags/list", headers=bearer(body["token"]))
        assert r.status_code == 200 and r.json()["tags"] == ["v1"]
        r = await client.get("/v2/other/app/tags/list", headers=bearer(body["token"]))
        assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]


async def test_create_only_users_get_create_for_push(root: str, tmp_path: Path) -> None:
    """'create' instead of 'push' in the token: the registry then refuses to move a tag."""
    await seed(root)
    app = create_app(settings(root, tmp_path))
    first, second = random_image(seed=20), random_image(seed=21)
    async with client_for(app) as client:
        client.headers.update(basic("alice", PASSWORDS["alice"]))
        token = (await get_token(client, "repository:rel/app:pull,push")).json()["token"]
        assert claims(token)["access"][0]["actions"] == ["pull", "create"]
        client.headers.update(bearer(token))
        for image in (first, second):
            for digest, data in image.blobs.items():
                r = await client.post("/v2/rel/app/blobs/uploads/", params={"digest": digest}, content=data)
                assert r.status_code == 201, r.text
        ct = {"Content-Type": first.media_type}
        assert (await client.put("/v2/rel/app/manifests/1", content=first.manifest, headers=ct)).status_code == 201
        r = await client.put("/v2/rel/app/manifests/1", content=second.manifest, headers=ct)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"


async def test_anonymous_and_bad_credentials(root: str, tmp_path: Path) -> None:
    await seed(root)
    app = create_app(settings(root, tmp_path))
    async with client_for(app) as client:
        r = await get_token(client, "repository:public/x:pull,push", "repository:team/app:pull", "registry:catalog:*")
        assert r.status_code == 200
        c = claims(r.json()["token"])
        assert c["sub"] == "" and c["access"] == [{"type": "repository", "name": "public/x", "actions": ["pull"]}]
        r = await get_token(client, "repository:team/app:pull", offline_token="true")
        assert "refresh_token" not in r.json()  # nobody to refresh for
        r = await client.get("/auth/token", params={"scope": "repository:public/x:pull"}, headers=basic("", ""))
        assert r.status_code == 200 and claims(r.json()["token"])["sub"] == ""
        r = await client.get("/auth/token", params={"service": SERVICE}, headers=basic("alice", "wrong"))
        assert r.status_code == 401 and r.headers["www-authenticate"] == f'Basic realm="{REALM}"'
        r = await client.get("/auth/token", params={"service": "elsewhere"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_concurrent_guesses_for_a_token_are_limited(
    root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the registry's own Basic auth: a check counts against the limit while it runs."""
    await seed(root)
    check = Htpasswd.check

    def slow(self: Htpasswd, user: str, password: str) -> bool:
        time.sleep(0.05)  # as slow as a production bcrypt cost
        return check(self, user, password)

    monkeypatch.setattr(Htpasswd, "check", slow)
    base = Settings.model_dump(settings(root, tmp_path))
    base["kura"]["auth"]["ratelimit"] = {"failures": 2, "window": 60}
    app = create_app(Settings.model_validate(base))
    async with client_for(app) as client:
        guesses = [
            client.get("/auth/token", params={"service": SERVICE}, headers=basic("alice", f"guess-{i}"))
            for i in range(8)
        ]
        assert sorted(r.status_code for r in await asyncio.gather(*guesses)) == [401] * 2 + [429] * 6


async def test_refresh_token_flow_of_docker_login(root: str, tmp_path: Path) -> None:
    """GET with offline_token=true gives a refresh token; the OAuth2 POST trades it for access tokens."""
    await seed(root)
    app = create_app(settings(root, tmp_path))
    async with client_for(app) as client:
        client.headers.update(basic("alice", PASSWORDS["alice"]))
        r = await get_token(client, "repository:team/app:pull", offline_token="true")
        refresh = r.json()["refresh_token"]
    async with client_for(app) as client:
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "docker", "service": SERVICE}
        r = await client.post("/auth/token", data=form | {"scope": "repository:team/app:pull,push"})
        assert r.status_code == 200, r.text
        assert claims(r.json()["access_token"])["access"][0]["actions"] == ["pull", "push"]
        # A refresh token is not an access token.
        assert (await client.get("/v2/team/app/tags/list", headers=bearer(refresh))).status_code == 401
        # A changed password revokes it.
        htpasswd(str(tmp_path / "htpasswd"), {"alice": "rotated"})
        r = await client.post("/auth/token", data=form)
        assert r.status_code == 401 and r.json()["error"] == "invalid_grant"


async def test_oauth2_password_grant(root: str, tmp_path: Path) -> None:
    """containerd's first try: POST grant_type=password with client_id; access_type=offline adds a refresh."""
    await seed(root)
    app = create_app(settings(root, tmp_path))
    async with client_for(app) as client:
        form = {
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORDS["alice"],
            "client_id": "containerd-client",
            "scope": "repository:team/app:pull repository:team/app:push",
            "service": SERVICE,
            "access_type": "offline",
        }
        r = await client.post("/auth/token", data=form)
        assert r.status_code == 200, r.text
        assert claims(r.json()["access_token"])["access"][0]["actions"] == ["pull", "push"]
        assert "refresh_token" in r.json()
        r = await client.post("/auth/token", data=form | {"password": "wrong"})
        assert r.status_code == 401
        r = await client.post("/auth/token", data=form | {"grant_type": "client_credentials"})
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
        r = await client.post("/auth/token", data={k: v for k, v in form.items() if k != "client_id"})
        assert r.status_code == 400


def test_signing_key_is_created_once_0600_and_published(root: str, tmp_path: Path) -> None:
    directory = os.path.join(root, "kura", "auth")
    first = load_or_create(directory)
    assert load_or_create(directory) == first
    assert stat.S_IMODE(os.stat(os.path.join(directory, KEY_FILE)).st_mode) == 0o600
    assert os.listdir(directory) == [KEY_FILE]  # no temporary file left behind
    create_app(settings(root, tmp_path))
    with open(os.path.join(directory, CERT_FILE), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    assert cert.public_bytes(Encoding.PEM) in first


async def test_tokens_survive_a_restart(root: str, tmp_path: Path) -> None:
    """The key is kept on disk: a token issued before a restart (or by another worker) still verifies."""
    await seed(root)
    async with client_for(create_app(settings(root, tmp_path))) as client:
        client.headers.update(basic("alice", PASSWORDS["alice"]))
        token = (await get_token(client, "repository:team/app:pull")).json()["token"]
    async with client_for(create_app(settings(root, tmp_path))) as client:
        assert (await client.get("/v2/team/app/tags/list", headers=bearer(token))).status_code == 200


async def test_basic_credentials_straight_to_the_registry(root: str, tmp_path: Path) -> None:
    """With the built-in token server Kura owns the accounts: Basic works on /v2/ too, with the policies."""
    await seed(root)
    app = create_app(settings(root, tmp_path))
    async with client_for(app) as client:
        r = await client.get("/v2/team/app/tags/list", headers=basic("alice", PASSWORDS["alice"]))
        assert r.status_code == 200
        r = await client.get("/v2/other/app/tags/list", headers=basic("alice", PASSWORDS["alice"]))
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        r = await client.get("/v2/team/app/tags/list", headers=basic("alice", "wrong"))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="{REALM}",service="{SERVICE}",scope="repository:team/app:pull",error="invalid_token"'
        )


def test_token_server_needs_token_auth(root: str, tmp_path: Path) -> None:
    from app.config import ConfigError

    accounts = htpasswd(str(tmp_path / "htpasswd"), PASSWORDS)
    document = base_settings(
        root,
        auth={"htpasswd": {"realm": "r", "path": accounts}},
        kura={"auth": {"tokenserver": {"enabled": True, "htpasswd": accounts}}},
    )
    with pytest.raises(ConfigError, match=r"needs auth\.token"):
        create_app(Settings.model_validate(document))
