from __future__ import annotations

import httpx

from tests.oci import OCI_MANIFEST, push_image, random_image


async def tag_all(client: httpx.AsyncClient, repo: str, tags: list[str]) -> None:
    image = random_image(seed=1)
    await push_image(client, repo, image, tags[0])
    for tag in tags[1:]:
        r = await client.put(
            f"/v2/{repo}/manifests/{tag}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 201


async def test_tags_sorted_and_paginated(client: httpx.AsyncClient) -> None:
    await tag_all(client, "r", ["c", "a", "b", "d"])
    r = await client.get("/v2/r/tags/list")
    assert r.json() == {"name": "r", "tags": ["a", "b", "c", "d"]} and "link" not in r.headers
    r = await client.get("/v2/r/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["link"] == '</v2/r/tags/list?n=2&last=b>; rel="next"'
    r = await client.get("/v2/r/tags/list", params={"n": 2, "last": "b"})
    assert r.json()["tags"] == ["c", "d"] and "link" not in r.headers
    r = await client.get("/v2/r/tags/list", params={"n": 0})
    assert r.json()["tags"] == []
    r = await client.get("/v2/r/tags/list", params={"last": "c"})
    assert r.json()["tags"] == ["d"]


async def test_tags_errors(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/nope/tags/list")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    await tag_all(client, "r", ["a"])
    r = await client.get("/v2/r/tags/list", params={"n": "-1"})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


async def test_untagged_repository_lists_no_tags(client: httpx.AsyncClient) -> None:
    image = random_image(seed=2)
    await push_image(client, "r", image, tag=None)
    r = await client.get("/v2/r/tags/list")
    assert r.status_code == 200 and r.json() == {"name": "r", "tags": []}


async def test_catalog_paginated(client: httpx.AsyncClient) -> None:
    for repo in ["b", "a/x", "a", "c"]:
        await tag_all(client, repo, ["t"])
    r = await client.get("/v2/_catalog")
    assert r.json() == {"repositories": ["a", "a/x", "b", "c"]}
    r = await client.get("/v2/_catalog", params={"n": 3})
    assert r.json()["repositories"] == ["a", "a/x", "b"]
    assert r.headers["link"] == '</v2/_catalog?n=3&last=b>; rel="next"'
    r = await client.get("/v2/_catalog", params={"n": 3, "last": "b"})
    assert r.json()["repositories"] == ["c"] and "link" not in r.headers
    r = await client.get("/v2/_catalog", params={"n": 0})
    assert r.json()["repositories"] == []
    r = await client.get("/v2/_catalog", params={"n": "x"})
    assert r.status_code == 400
