"""htpasswd accounts as registry:2 reads them, with Kura's cache and failure limit."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.auth.htpasswd import CACHE_SIZE, Htpasswd, parse_basic
from app.auth.middleware import AuthMiddleware
from app.auth.ratelimit import FailureLimiter
from app.main import create_app
from tests.app.authworld import REALM, client_for, htpasswd_settings, seed
from tests.authkit import basic, htpasswd


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_apache_2y_entries_verify(tmp_path: Path) -> None:
    """htpasswd -B writes $2y$ entries; they verify, and a wrong password or unknown user does not."""
    path = htpasswd(str(tmp_path / "h"), {"alice": "s3cret", "bob": "other"})
    assert b"$2y$" in Path(path).read_bytes()
    users = Htpasswd(path, cache_ttl=60)
    assert users.check("alice", "s3cret")
    assert not users.check("alice", "s3cret ")
    assert not users.check("carol", "s3cret")
    assert not users.check("alice", "x" * 100)  # bcrypt refuses > 72 bytes: a failure, not an error


def test_non_bcrypt_and_malformed_lines_never_match(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_text("# comment\n\nmd5:$apr1$abc$def\nplain:password\nnocolon\n")
    users = Htpasswd(str(path), cache_ttl=60)
    assert not users.check("md5", "x") and not users.check("plain", "password")
    assert "nocolon" not in users


def test_reload_on_change_drops_the_cache(tmp_path: Path) -> None:
    path = htpasswd(str(tmp_path / "h"), {"alice": "old"})
    users = Htpasswd(path, cache_ttl=60)
    users.remember("alice", "old", users.generation)
    assert users.cached("alice", "old")
    htpasswd(path, {"alice": "new"})  # htpasswd rewrites the entry
    users.refresh()
    assert not users.cached("alice", "old")
    assert users.check("alice", "new") and not users.check("alice", "old")


async def test_requests_see_a_changed_file_from_the_next_turn_of_the_loop(tmp_path: Path) -> None:
    """The file is looked at once per event-loop turn: a change shows in the very next one."""
    path = htpasswd(str(tmp_path / "h"), {"alice": "old"})
    users = Htpasswd(path, cache_ttl=60)
    assert await users.verify("alice", "old")
    htpasswd(path, {"alice": "new"})
    await asyncio.sleep(0)
    assert not await users.verify("alice", "old")
    assert await users.verify("alice", "new")


def test_cache_expires_and_is_bounded(tmp_path: Path) -> None:
    clock = Clock()
    users = Htpasswd(htpasswd(str(tmp_path / "h"), {"alice": "pw"}), cache_ttl=10, clock=clock)
    users.remember("alice", "pw", users.generation)
    clock.now += 11
    assert not users.cached("alice", "pw")
    for i in range(CACHE_SIZE + 10):
        users.remember("alice", f"pw{i}", users.generation)
    assert not users.cached("alice", "pw0") and users.cached("alice", f"pw{CACHE_SIZE + 9}")
    users.remember("alice", "stale", users.generation - 1)  # verified against the previous file
    assert not users.cached("alice", "stale")


@pytest.mark.parametrize(
    "header, expected",
    [
        ("Basic YWxpY2U6cHc=", ("alice", "pw")),
        ("basic YWxpY2U6cDp3", ("alice", "p:w")),
        ("Basic YWxpY2U=", None),  # no colon
        ("Basic !!!", None),
        ("Bearer abc", None),
        ("Basic //79", None),  # not UTF-8
    ],
)
def test_parse_basic(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


def test_failure_limiter_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, 60, clock)
    for _ in range(3):
        assert limiter.retry_after("1.2.3.4") is None
        limiter.failed("1.2.3.4")
    clock.now += 10
    assert limiter.retry_after("1.2.3.4") == 50
    assert limiter.retry_after("5.6.7.8") is None
    clock.now += 51
    assert limiter.retry_after("1.2.3.4") is None


async def test_without_policies_every_user_may_do_everything(root: str, tmp_path: Path) -> None:
    """registry:2's htpasswd model: any valid account has every right; no account has none."""
    world = await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path)))
    async with client_for(app) as client:
        for user, password in (("bob", "bob-secret"), ("dave", "dave-secret")):
            r = await client.delete(f"/v2/other/app/manifests/{world.other.digest}", headers=basic(user, password))
            assert r.status_code in (202, 404), r.text
        r = await client.get("/v2/_catalog")
        assert r.status_code == 401
        assert r.content == (
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":'
            b'[{"Type":"registry","Class":"","Name":"catalog","Action":"*"}]}]}'
        )
        r = await client.get("/v2/")
        assert r.content == b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}'
        assert r.headers["content-type"] == "application/json; charset=utf-8"


async def test_long_passwords_and_garbage_headers_are_401(root: str, tmp_path: Path) -> None:
    await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path)))
    async with client_for(app) as client:
        for headers in (basic("alice", "x" * 200), {"Authorization": "Basic %%%"}, {"Authorization": "Negotiate x"}):
            r = await client.get("/v2/team/app/tags/list", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == f'Basic realm="{REALM}"'


async def test_repeated_failures_are_slowed_down(root: str, tmp_path: Path) -> None:
    """After the configured failures, 429 with Retry-After, even for the right password."""
    await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path), ratelimit={"failures": 3, "window": 60}))
    async with client_for(app) as client:
        for _ in range(3):
            assert (await client.get("/v2/", headers=basic("alice", "guess"))).status_code == 401
        r = await client.get("/v2/", headers=basic("alice", "alice-secret"))
        assert r.status_code == 429
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert 1 <= int(r.headers["retry-after"]) <= 60


def _slow_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """bcrypt as slow as a production cost makes it (the tests' files use a low one); the users checked."""
    checked: list[str] = []
    check = Htpasswd.check

    def slow(self: Htpasswd, user: str, password: str) -> bool:
        checked.append(user)
        time.sleep(0.05)
        return check(self, user, password)

    monkeypatch.setattr(Htpasswd, "check", slow)
    return checked


async def test_concurrent_guesses_are_limited_too(root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue: the limit was looked at before a check and counted after it, so 40 guesses sent at once
    were all checked (39 x 401, then the right password 200). Now a check counts while it runs."""
    await seed(root)
    checked = _slow_checks(monkeypatch)
    app = create_app(htpasswd_settings(root, str(tmp_path), ratelimit={"failures": 3, "window": 60}))
    async with client_for(app) as client:
        guesses = [client.get("/v2/", headers=basic("alice", f"guess-{i}")) for i in range(12)]
        statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))
        assert statuses == [401] * 3 + [429] * 9 and len(checked) == 3
        assert (await client.get("/v2/", headers=basic("alice", "alice-secret"))).status_code == 429


async def test_parallel_requests_with_one_password_are_checked_once(
    root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's parallel pulls with a password not yet remembered wait for one check, and are not
    taken for guesses, even with a limit of one."""
    await seed(root)
    checked = _slow_checks(monkeypatch)
    app = create_app(htpasswd_settings(root, str(tmp_path), ratelimit={"failures": 1, "window": 60}))
    async with client_for(app) as client:
        pulls = [client.get("/v2/team/app/tags/list", headers=basic("alice", "alice-secret")) for _ in range(8)]
        assert [r.status_code for r in await asyncio.gather(*pulls)] == [200] * 8
    assert checked == ["alice"]


async def test_password_file_changes_apply_to_the_next_request(root: str, tmp_path: Path) -> None:
    await seed(root)
    settings = htpasswd_settings(root, str(tmp_path))
    app = create_app(settings)
    assert settings.auth.htpasswd is not None
    async with client_for(app) as client:
        assert (await client.get("/v2/", headers=basic("alice", "alice-secret"))).status_code == 200
        htpasswd(settings.auth.htpasswd.path, {"alice": "rotated"})
        assert (await client.get("/v2/", headers=basic("alice", "alice-secret"))).status_code == 401
        assert (await client.get("/v2/", headers=basic("alice", "rotated"))).status_code == 200


async def test_credentials_never_reach_the_log(root: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path)))
    caplog.set_level("DEBUG")
    async with client_for(app) as client:
        await client.get("/v2/", headers=basic("alice", "wrong-password-xyz"))
        await client.get("/v2/", headers=basic("alice", "alice-secret"))
    text = caplog.text
    assert "wrong-password-xyz" not in text and "alice-secret" not in text and "Basic " not in text


def test_missing_htpasswd_file_is_a_config_error(root: str, tmp_path: Path) -> None:
    from app.config import ConfigError

    settings = htpasswd_settings(root, str(tmp_path))
    assert settings.auth.htpasswd is not None
    os.unlink(settings.auth.htpasswd.path)
    with pytest.raises(ConfigError, match="htpasswd"):
        create_app(settings)


async def test_unauthenticated_server_has_no_auth_layer(app: Starlette, client: httpx.AsyncClient) -> None:
    """With no auth configured nothing is checked, and no middleware is even installed."""
    assert all(m.cls is not AuthMiddleware for m in app.user_middleware)  # type: ignore[comparison-overlap]
    r = await client.get("/v2/_catalog", headers=basic("anyone", "anything"))
    assert r.status_code == 200


def test_serve_refuses_a_missing_htpasswd_file_clearly(
    root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kura serve checks auth's files before it starts any worker: one message, exit status 2."""
    from app.cli import main

    config = tmp_path / "config.yml"
    config.write_text(f"auth:\n  htpasswd:\n    realm: r\n    path: {tmp_path / 'missing'}\n")
    assert main(["serve", "--config", str(config), "--root", root, "--workers", "2"]) == 2
    assert "cannot read the htpasswd file" in capsys.readouterr().err
