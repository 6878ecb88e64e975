"""Access policies: globs, groups, anonymous and default rights, admins, create without overwrite;
the catalog lists only what one may pull, and a mount never reveals a blob one may not read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from app.auth.policy import Policies
from app.auth.settings import KuraAuth
from app.logs import FIELDS
from app.main import create_app
from storage import Registry
from storage.errors import ManifestUnknown
from tests.app.authworld import PASSWORDS, POLICIES, World, client_for, htpasswd_settings, seed
from tests.authkit import basic
from tests.oci import push_blob, random_image

RULES: dict[str, Any] = {
    "admins": ["root"],
    "groups": {"devs": ["alice", "bob"]},
    "repositories": {
        "**": {"default": ["pull"]},
        "team/*": {"policies": [{"groups": ["devs"], "actions": ["pull", "push"]}]},
        "team/secret/**": {"policies": [{"users": ["alice"], "actions": ["pull"]}]},
        "public/**": {"anonymous": ["pull"], "policies": [{"users": ["bob"], "actions": ["push", "delete"]}]},
    },
}


class TestPolicies:
    @pytest.mark.parametrize(
        "user, repository, expected",
        [
            ("alice", "team/app", {"pull", "push"}),
            ("bob", "team/app", {"pull", "push"}),
            ("carol", "team/app", set()),  # team/* has no default: the longest match wins over "**"
            ("carol", "misc/thing", {"pull"}),  # "**": any authenticated user
            (None, "misc/thing", set()),
            ("alice", "team/secret/x", {"pull"}),  # * does not cross "/": team/* does not match
            ("bob", "team/secret/x", set()),
            (None, "public/a/b", {"pull"}),
            ("bob", "public/a/b", {"pull", "push", "delete"}),  # anonymous rights are everyone's
            ("root", "team/secret/x", {"pull", "push", "create", "delete"}),
        ],
    )
    def test_actions(self, user: str | None, repository: str, expected: set[str]) -> None:
        assert Policies(KuraAuth.model_validate(RULES)).actions(user, repository) == expected

    def test_no_policies_is_registry2s_model(self) -> None:
        policies = Policies(KuraAuth())
        assert policies.actions("anyone", "x") == {"pull", "push", "create", "delete"}
        assert policies.actions(None, "x") == set()


IMMUTABLE: dict[str, Any] = {
    "repositories": {
        "rel/**": {"policies": [{"users": ["alice"], "actions": ["pull", "create"]}], "anonymous": ["pull"]},
        "team/**": POLICIES["repositories"]["team/**"],
    },
    "admins": ["root"],
    "groups": POLICIES["groups"],
}


async def test_create_without_overwrite(root: str, tmp_path: Path) -> None:
    """With create but not push: new tags and digests yes, the same manifest again yes, moving a tag no."""
    await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path), IMMUTABLE))
    alice = basic("alice", PASSWORDS["alice"])
    first, second = random_image(seed=10), random_image(seed=11)
    async with client_for(app) as client:
        client.headers.update(alice)
        for image in (first, second):
            for data in image.blobs.values():
                await push_blob(client, "rel/app", data)

        async def put(tag: str, image: Any) -> int:
            headers = {"Content-Type": image.media_type}
            r = await client.put(f"/v2/rel/app/manifests/{tag}", content=image.manifest, headers=headers)
            return r.status_code

        assert await put("1.0", first) == 201
        assert await put("1.0", first) == 201  # a re-push of the same image is harmless
        assert await put("1.0", second) == 403
        assert await put(second.digest, second) == 201
        assert await put("1.1", second) == 201
        r = await client.get("/v2/rel/app/manifests/1.0")
        assert r.content == first.manifest
        r = await client.put("/v2/rel/app/manifests/1.0", content=second.manifest, headers={"Content-Type": "x"})
        assert r.json()["errors"][0]["code"] == "DENIED" and "1.0" in r.json()["errors"][0]["message"]
        assert (await client.delete(f"/v2/rel/app/manifests/{first.digest}")).status_code == 403
        # Issue: the look at the tag raced other pushes (eight concurrent PUTs each saw no tag, each got
        # 201, the tag moved seven times). Here the look sees no tag while the tag exists: the tag
        # write itself must refuse, with the same answer.
        real = Registry.get_manifest

        async def unseen(self: Registry, name: str, reference: str) -> Any:
            if reference == "1.0":
                raise ManifestUnknown("manifest unknown")
            return await real(self, name, reference)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Registry, "get_manifest", unseen)
            headers = {"Content-Type": second.media_type}
            r = await client.put("/v2/rel/app/manifests/1.0", content=second.manifest, headers=headers)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
        assert "1.0" in r.json()["errors"][0]["message"]
        assert (await client.get("/v2/rel/app/manifests/1.0")).content == first.manifest
    async with client_for(app) as anonymous:
        assert (await anonymous.get("/v2/rel/app/manifests/1.0")).status_code == 200
        assert (await anonymous.get("/v2/rel/app/tags/list")).status_code == 200
        # skopeo and podman send empty Basic credentials when they have none: still anonymous.
        assert (await anonymous.get("/v2/rel/app/tags/list", headers=basic("", ""))).status_code == 200
        r = await anonymous.put("/v2/rel/app/manifests/2.0", content=first.manifest)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
        assert (await anonymous.get("/v2/")).status_code == 401  # /v2/ always wants credentials


async def test_catalog_lists_what_one_may_pull(root: str, tmp_path: Path) -> None:
    await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path), POLICIES))
    async with client_for(app) as client:
        r = await client.get("/v2/_catalog", headers=basic("bob", PASSWORDS["bob"]))
        assert r.json() == {"repositories": ["team/app"]}
        r = await client.get("/v2/_catalog", headers=basic("dave", PASSWORDS["dave"]))
        assert r.json() == {"repositories": []}
        r = await client.get("/v2/_catalog?n=1", headers=basic("root", PASSWORDS["root"]))
        assert r.json() == {"repositories": ["other/app"]} and 'rel="next"' in r.headers["link"]


async def test_catalog_pages_count_only_visible_repositories(root: str, tmp_path: Path) -> None:
    world = await seed(root)
    app = create_app(htpasswd_settings(root, str(tmp_path), POLICIES))
    async with client_for(app) as client:
        client.headers.update(basic("root", PASSWORDS["root"]))
        for name in ("team/b", "team/c", "zzz/hidden"):
            await push_blob(client, name, world.layer.encode())
        client.headers.update(basic("bob", PASSWORDS["bob"]))
        r = await client.get("/v2/_catalog?n=2")
        assert r.json() == {"repositories": ["team/app", "team/b"]}
        r = await client.get("/v2/_catalog?n=2&last=team/b")
        assert r.json() == {"repositories": ["team/c"]} and "link" not in r.headers


async def mount(client: Any, world: World, source: str | None, user: str, blob: str) -> int:
    query = {"mount": blob} | ({"from": source} if source else {})
    r = await client.post("/v2/team/app/blobs/uploads/", params=query, headers=basic(user, PASSWORDS[user]))
    return int(r.status_code)


async def test_mount_needs_pull_on_the_source(root: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Mounting from a repository one cannot read, or without naming one, is a plain upload (202).
    The access line still shows the request as sent, with its repository and user."""
    world = await seed(root)
    # other/app's manifest is a blob of other/app only; alice may push team/** and read nothing else.
    open_rules = {"repositories": {"other/**": {"policies": [{"users": ["bob"], "actions": ["pull"]}]}}}
    rules = POLICIES | {"repositories": POLICIES["repositories"] | open_rules["repositories"]}
    rules["repositories"]["team/**"] = {"policies": [{"users": ["alice", "bob"], "actions": ["pull", "push"]}]}
    app = create_app(htpasswd_settings(root, str(tmp_path), rules))
    async with client_for(app) as client:
        layer, config = list(world.other.blobs)
        caplog.set_level(logging.INFO, logger="kura.access")
        caplog.clear()
        assert await mount(client, world, "other/app", "alice", layer) == 202
        (line,) = [getattr(r, FIELDS) for r in caplog.records if r.name == "kura.access"]
        assert (
            line["http.request.uri"]
            == f"/v2/team/app/blobs/uploads/?mount={layer.replace(':', '%3A')}&from=other%2Fapp"
        )
        assert line["vars.name"] == "team/app" and line["auth.user.name"] == "alice"
        assert await mount(client, world, None, "alice", layer) == 202
        r = await client.head(f"/v2/team/app/blobs/{layer}", headers=basic("alice", PASSWORDS["alice"]))
        assert r.status_code == 404  # nothing was mounted
        assert await mount(client, world, "other/app", "bob", layer) == 201
        assert await mount(client, world, None, "root", config) == 201  # an admin may read everything
        # The check reads the query as the route does: an encoded key, or a repeated from whose last
        # value is empty (mount from anywhere), is no way around it.
        alice = basic("alice", PASSWORDS["alice"])
        for query in (f"moun%74={layer}&from=other/app", f"%6Dount={layer}", f"mount={layer}&from=team/app&from="):
            r = await client.post(f"/v2/team/x/blobs/uploads/?{query}", headers=alice)
            assert r.status_code == 202, query
            assert (await client.head(f"/v2/team/x/blobs/{layer}", headers=alice)).status_code == 404, query
