"""The web UI under auth: logging in and out with a real htpasswd file, and exactly the rights of the
access policies (what a user sees, what they may delete or restore); a session is a signed cookie."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from app.ui import session
from tests.app.authworld import PASSWORDS, POLICIES, client_for, htpasswd_settings, seed, token_settings
from tests.app.uikit import csrf_of
from tests.authkit import CA
from tests.oci import push_image, random_image


async def log_in(
    client: httpx.AsyncClient, user: str, password: str | None = None, next_url: str = "/"
) -> httpx.Response:
    page = await client.get("/-/login", params={"next": next_url})
    assert page.status_code == 200
    fields = {"csrf": csrf_of(page), "username": user, "password": password or PASSWORDS[user], "next": next_url}
    return await client.post("/-/login", data=fields)


def listed(page: httpx.Response) -> list[str]:
    return re.findall(r'<td><a href="/r/([^"]+)">', page.text)


async def test_anonymous_visitors_see_nothing_and_may_log_in(root: str, tmp_path: Path) -> None:
    await seed(root)
    async with client_for(create_app(htpasswd_settings(root, str(tmp_path), POLICIES))) as c:
        home = await c.get("/")
        assert home.status_code == 200 and listed(home) == [] and 'href="/-/login?next=/"' in home.text
        assert (await c.get("/r/team/app")).status_code == 404
        assert (await c.get("/v2/_catalog")).status_code == 401  # the API still challenges


async def test_each_user_sees_and_may_do_what_the_policies_grant(root: str, tmp_path: Path) -> None:
    await seed(root)
    application = create_app(htpasswd_settings(root, str(tmp_path), POLICIES))
    async with client_for(application) as bob:
        r = await log_in(bob, "bob", next_url="/r/team/app")
        assert r.status_code == 303 and r.headers["location"] == "/r/team/app"
        assert listed(await bob.get("/")) == ["team/app"]
        page = await bob.get("/r/team/app")
        assert "Logged in as <strong>bob</strong>" in page.text and ">Delete</a>" not in page.text
        assert (await bob.get("/r/other/app")).status_code == 404  # not even confirmed to exist
        refused = await bob.post("/r/team/app/-/tags/v1/delete", data={"csrf": csrf_of(page)})
        assert refused.status_code == 403 and "you may not delete in team/app" in refused.text
        storage = await bob.get("/-/storage")
        assert listed(storage) == ["team/app"] and "Deduplication saves" not in storage.text

    async with client_for(application) as alice:
        await log_in(alice, "alice")
        page = await alice.get("/r/team/app")
        assert ">Delete</a>" in page.text
        r = await alice.post("/r/team/app/-/tags/v1/delete", data={"csrf": csrf_of(page)})
        assert r.status_code == 303
        assert (await alice.get("/r/team/app")).text.count(">Delete</a>") == 0

    async with client_for(application) as admin:
        await log_in(admin, "root")
        assert listed(await admin.get("/")) == ["other/app", "team/app"]
        assert "Deduplication saves" in (await admin.get("/-/storage")).text


async def test_restore_needs_push(root: str, tmp_path: Path) -> None:
    settings = htpasswd_settings(root, str(tmp_path), POLICIES)
    world = await seed(root)
    application = create_app(settings)
    async with client_for(application) as alice:
        await log_in(alice, "alice")
        alice.auth = ("alice", PASSWORDS["alice"])  # the API takes Basic credentials; the UI ignores them
        await push_image(alice, "team/app", world.other, "v1")
        assert ">Restore</button>" in (await alice.get("/r/team/app/-/tags/v1/history")).text
    async with client_for(application) as bob:
        await log_in(bob, "bob")
        history = await bob.get("/r/team/app/-/tags/v1/history")
        assert ">Restore</button>" not in history.text
        r = await bob.post(
            "/r/team/app/-/tags/v1/restore", data={"csrf": csrf_of(history), "digest": world.image.digest}
        )
        assert r.status_code == 403


async def test_a_wrong_password_is_refused_and_failures_are_limited(root: str, tmp_path: Path) -> None:
    await seed(root)
    settings = htpasswd_settings(root, str(tmp_path), POLICIES, ratelimit={"failures": 2, "window": 60})
    async with client_for(create_app(settings)) as c:
        wrong = await log_in(c, "bob", "not-bobs")
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        assert "Logged in as" not in wrong.text and "bob-secret" not in wrong.text
        assert (await log_in(c, "nobody", "x")).status_code == 401
        held = await log_in(c, "bob")  # even the right password, while held back
        assert held.status_code == 429 and held.headers["retry-after"].isdigit()


async def test_the_ui_and_the_api_share_one_failed_login_budget(root: str, tmp_path: Path) -> None:
    await seed(root)
    settings = htpasswd_settings(root, str(tmp_path), POLICIES, ratelimit={"failures": 2, "window": 60})
    async with client_for(create_app(settings)) as c:
        assert (await log_in(c, "bob", "not-bobs")).status_code == 401  # one failure through the UI
        api = await c.get("/v2/team/app/tags/list", auth=("bob", "still-not-bobs"))
        assert api.status_code == 401  # and one through the API: the budget of 2 is spent
        held = await c.get("/v2/team/app/tags/list", auth=("bob", PASSWORDS["bob"]))
        assert held.status_code == 429 and held.headers["retry-after"].isdigit()
        assert held.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert (await log_in(c, "bob")).status_code == 429  # the UI holds the client back too


async def test_logging_out_ends_the_session_and_its_tokens(root: str, tmp_path: Path) -> None:
    await seed(root)
    async with client_for(create_app(htpasswd_settings(root, str(tmp_path), POLICIES))) as c:
        await log_in(c, "alice")
        page = await c.get("/r/team/app")
        old_token = csrf_of(page)
        r = await c.post("/-/logout", data={"csrf": old_token})
        assert r.status_code == 303 and r.headers["location"] == "/"
        home = await c.get("/")
        assert "Logged in as" not in home.text and listed(home) == []
        r = await c.post("/r/team/app/-/tags/v1/delete", data={"csrf": old_token})
        assert r.status_code in (403, 404)
        assert (await c.post("/-/logout", data={"csrf": "x"})).status_code == 403


async def test_a_login_redirects_only_within_the_site(root: str, tmp_path: Path) -> None:
    await seed(root)
    async with client_for(create_app(htpasswd_settings(root, str(tmp_path), POLICIES))) as c:
        r = await log_in(c, "bob", next_url="//evil.test/x")
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "bob-secret" not in cookie


async def test_a_forged_or_foreign_cookie_is_anonymous(root: str, tmp_path: Path) -> None:
    await seed(root)
    settings = htpasswd_settings(root, str(tmp_path), POLICIES)
    async with client_for(create_app(settings)) as c:
        await log_in(c, "root")
        real = c.cookies[session.COOKIE]
        forged = session.Session("root", "nonce", 2**40).cookie(b"k" * 32)
        c.cookies.set(session.COOKIE, forged, domain="registry.test")
        assert "Logged in as" not in (await c.get("/")).text
        c.cookies.set(session.COOKIE, real, domain="registry.test")
        assert "Logged in as <strong>root</strong>" in (await c.get("/")).text

    # Another worker process on the same root reads the same key: the cookie is valid there too.
    async with client_for(create_app(settings)) as other:
        other.cookies.set(session.COOKIE, real, domain="registry.test")
        assert "Logged in as <strong>root</strong>" in (await other.get("/")).text


def test_session_cookies_expire_and_resist_tampering() -> None:
    key = b"k" * 32
    found = session.Session.new("alice", now=1000)
    cookie = found.cookie(key)
    assert session.read(key, cookie, now=1001) == session.Session("alice", found.nonce, found.expires)
    assert session.read(key, cookie, now=1000 + session.LIFETIME + 1) is None
    payload, mac = cookie.split(".")
    assert session.read(key, payload[:-2] + "AA." + mac, now=1001) is None
    assert session.read(b"x" * 32, cookie, now=1001) is None
    assert session.read(key, "garbage", now=1001) is None


async def test_with_an_outside_token_issuer_the_ui_shows_what_anonymous_users_may_pull(
    root: str, tmp_path: Path
) -> None:
    await seed(root)
    policies: dict[str, Any] = {"repositories": {"other/**": {"anonymous": ["pull"]}}}
    settings = token_settings(root, str(tmp_path), CA(), policies)
    async with client_for(create_app(settings)) as c:
        home = await c.get("/")
        assert listed(home) == ["other/app"] and "Log in" not in home.text
        assert (await c.get("/-/login")).status_code == 404
        assert (await c.get("/r/team/app")).status_code == 404
        assert (await c.get("/r/other/app")).status_code == 200


async def test_without_auth_everyone_may_do_everything(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    await push_image(client, "open", random_image(layers=1, seed=40), "v1")
    page = await client.get("/r/open")
    assert ">Delete</a>" in page.text and "Log in" not in page.text
    assert (await client.get("/-/login")).status_code == 404


def test_the_ui_routes_are_open_to_the_middleware_and_shadow_no_api() -> None:
    """The middleware lets UI pages through (they check the policies themselves) and still guards the API."""
    from app.auth.access import AccessMap, Kind
    from app.routes import ROUTES
    from app.ui import routes as ui

    access = AccessMap([*ROUTES, *ui.ROUTES])
    for method, path in [("GET", "/"), ("GET", "/r/team/app"), ("POST", "/-/login"), ("POST", "/r/a/-/tags/v1/delete")]:
        assert access.need(method, path).kind is Kind.OPEN, path
    assert access.need("GET", "/v2/team/app/manifests/v1").kind is Kind.PULL
    assert access.need("GET", "/v2/_catalog").kind is Kind.CATALOG
    for route in ui.ROUTES:
        assert not route.path.startswith(("/v2", "/_kura", "/auth", "/metrics")), route.path
