"""What the web UI changes: deleting a tag or a manifest, restoring a tag, and the CSRF guard on each."""

from __future__ import annotations

import httpx

from app.config import Settings
from tests.app.uikit import csrf_of, post_form
from tests.conftest import client_of, started
from tests.oci import push_image, random_image


async def digest_of(client: httpx.AsyncClient, name: str, tag: str) -> str | None:
    r = await client.head(f"/v2/{name}/manifests/{tag}")
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


async def test_deleting_a_tag_keeps_the_other_tags_of_its_digest(client: httpx.AsyncClient) -> None:
    image = random_image(layers=1, seed=20)
    for tag in ("a", "b", "c"):
        await push_image(client, "shared", image, tag)
    confirm = await client.get("/r/shared/-/tags/a/delete")
    assert confirm.status_code == 200
    assert "<strong>b</strong>, <strong>c</strong>" in confirm.text and image.digest in confirm.text
    r = await client.post("/r/shared/-/tags/a/delete", data={"csrf": csrf_of(confirm)})
    assert r.status_code == 303 and r.headers["location"] == "/r/shared?deleted=a"
    assert await digest_of(client, "shared", "a") is None
    assert await digest_of(client, "shared", "b") == image.digest == await digest_of(client, "shared", "c")
    assert (await client.get(f"/v2/shared/manifests/{image.digest}")).status_code == 200
    page = await client.get("/r/shared", params={"deleted": "a"})
    assert "Deleted a." in page.text and 'manifests/a"' not in page.text


async def test_deleting_a_manifest_removes_it_and_its_tags_only(client: httpx.AsyncClient) -> None:
    doomed, kept = random_image(layers=1, seed=21), random_image(layers=1, seed=22)
    await push_image(client, "m", doomed, "x")
    await push_image(client, "m", doomed, "y")
    await push_image(client, "m", kept, "z")
    confirm = await client.get(f"/r/m/-/manifests/{doomed.digest}/delete")
    assert "<strong>x</strong>, <strong>y</strong>" in confirm.text
    r = await client.post(f"/r/m/-/manifests/{doomed.digest}/delete", data={"csrf": csrf_of(confirm)})
    assert r.status_code == 303
    assert (await client.get(f"/v2/m/manifests/{doomed.digest}")).status_code == 404
    assert await digest_of(client, "m", "x") is None and await digest_of(client, "m", "y") is None
    assert await digest_of(client, "m", "z") == kept.digest


async def test_a_tag_is_restored_from_its_history(client: httpx.AsyncClient) -> None:
    old, new = random_image(layers=1, seed=23), random_image(layers=1, seed=24)
    await push_image(client, "h", old, "live")
    await push_image(client, "h", new, "live")
    history = await client.get("/r/h/-/tags/live/history")
    assert history.status_code == 200
    assert history.text.index(new.digest) < history.text.index(old.digest)  # newest first
    assert history.text.count(">Restore</button>") == 1
    r = await client.post("/r/h/-/tags/live/restore", data={"csrf": csrf_of(history), "digest": old.digest})
    assert r.status_code == 303 and r.headers["location"].startswith("/r/h/-/tags/live/history?restored=")
    assert await digest_of(client, "h", "live") == old.digest
    after = await client.get(r.headers["location"])
    assert f"live points at {old.digest} again" in after.text


async def test_only_the_tags_own_history_can_be_restored(client: httpx.AsyncClient) -> None:
    mine, elsewhere = random_image(layers=1, seed=25), random_image(layers=1, seed=26)
    await push_image(client, "h", mine, "one")
    await push_image(client, "h", elsewhere, "two")
    r = await post_form(client, "/r/h/-/tags/one/delete", "/r/h/-/tags/one/restore", digest=elsewhere.digest)
    assert r.status_code == 404
    r = await post_form(client, "/r/h/-/tags/one/delete", "/r/h/-/tags/one/restore", digest="sha256:nothex")
    assert r.status_code == 400
    assert await digest_of(client, "h", "one") == mine.digest


async def test_a_manifest_deleted_since_cannot_be_restored(client: httpx.AsyncClient) -> None:
    old, new = random_image(layers=1, seed=27), random_image(layers=1, seed=28)
    await push_image(client, "h", old, "t")
    await push_image(client, "h", new, "t")
    assert (await client.delete(f"/v2/h/manifests/{old.digest}")).status_code == 202
    history = await client.get("/r/h/-/tags/t/history")
    assert "no longer stored" in history.text and ">Restore</button>" not in history.text
    r = await client.post("/r/h/-/tags/t/restore", data={"csrf": csrf_of(history), "digest": old.digest})
    assert r.status_code == 404 and await digest_of(client, "h", "t") == new.digest


async def test_changes_without_the_sessions_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    image = random_image(layers=1, seed=29)
    await push_image(client, "guarded", image, "v1")
    await push_image(client, "guarded", random_image(layers=1, seed=30), "v1")

    assert (await client.post("/r/guarded/-/tags/v1/delete")).status_code == 403  # no cookie, no token
    await client.get("/")  # now with a session cookie
    assert (await client.post("/r/guarded/-/tags/v1/delete", data={"csrf": "forged"})).status_code == 403
    restore = await client.post("/r/guarded/-/tags/v1/restore", data={"digest": image.digest})
    assert restore.status_code == 403

    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as other:
        token_of_other_session = csrf_of(await other.get("/r/guarded/-/tags/v1/delete"))
    r = await client.post("/r/guarded/-/tags/v1/delete", data={"csrf": token_of_other_session})
    assert r.status_code == 403 and "security token" in r.text

    token = csrf_of(await client.get("/r/guarded/-/tags/v1/delete"))
    cross = await client.post(
        "/r/guarded/-/tags/v1/delete", data={"csrf": token}, headers={"Origin": "https://evil.test"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    assert await digest_of(client, "guarded", "v1") is not None

    done = await client.post(
        "/r/guarded/-/tags/v1/delete", data={"csrf": token}, headers={"Origin": "http://registry.test"}
    )
    assert done.status_code == 303 and await digest_of(client, "guarded", "v1") is None


async def test_deletes_are_offered_only_where_the_registry_allows_them(settings: Settings) -> None:
    closed = Settings.model_validate(
        settings.model_dump() | {"storage": settings.storage.model_dump() | {"delete": {"enabled": False}}}
    )
    async with started(closed) as application, client_of(application) as c:
        await push_image(c, "kept", random_image(layers=1, seed=31), "v1")
        page = await c.get("/r/kept")
        assert ">Delete</a>" not in page.text and ">History</a>" in page.text
        assert "Delete this manifest" not in (await c.get("/r/kept/-/manifests/v1")).text
        r = await c.post("/r/kept/-/tags/v1/delete", data={"csrf": csrf_of(await c.get("/r/kept/-/tags/v1/history"))})
        assert r.status_code == 405 and "storage.delete.enabled" in r.text
        assert (await c.get("/r/kept/-/tags/v1/delete")).status_code == 405
        assert await digest_of(c, "kept", "v1") is not None


async def test_a_read_only_registry_says_why_a_delete_is_refused(settings: Settings) -> None:
    frozen = Settings.model_validate(
        settings.model_dump()
        | {"storage": settings.storage.model_dump() | {"maintenance": {"readonly": {"enabled": True}}}}
    )
    async with started(frozen) as application, client_of(application) as c:
        token = csrf_of(await c.get("/"))
        r = await c.post("/r/frozen/-/tags/v1/delete", data={"csrf": token})
        api = await c.delete("/v2/frozen/manifests/v1")
        # The page says what the API says, the configuration hint included (not "storage.delete.enabled").
        assert r.status_code == api.status_code
        assert api.json()["errors"][0]["message"] in r.text
        assert "storage.maintenance.readonly.enabled is true" in r.text and "storage.delete.enabled" not in r.text
