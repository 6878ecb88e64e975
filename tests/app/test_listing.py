from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse

from app.routes.listing import ListingResponse
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


LISTINGS: list[dict[str, Any]] = [
    {"name": "team/app", "tags": ["1.0", "latest", "sha256-" + "a" * 64, "v_1-rc.2"]},
    {"name": "r", "tags": []},
    {"repositories": []},
    {"repositories": ["a", "a/b", "x.y/z-w_v"]},
    {"name": "", "tags": [""]},
    # Directory names a hand (or another tool) made: each needs the encoder's escapes
    {"name": "r", "tags": ['quo"te']},
    {"name": "r", "tags": ["back\\slash"]},
    {"name": "r", "tags": ["new\nline", "tab\t", "\x00"]},
    {"name": "r", "tags": ["ünïcode", "日本", "emoji\U0001f600"]},
    {"name": "r", "tags": ["sp ace", "a,b", "c:d", "[x]"]},
    {"name": "r", "tags": ["lone\ud800surrogate"]},
    {"name": 'q"', "tags": ["ok"]},
    {"name": "r", "tags": [1, "mixed"]},
]


@pytest.mark.parametrize("content", LISTINGS)
def test_listing_bytes_are_the_encoders(content: dict[str, Any]) -> None:
    """The listing's fast path writes exactly what JSONResponse writes, whatever the names."""
    try:
        expected = JSONResponse(content).body
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            ListingResponse(content)
        return
    assert ListingResponse(content).body == expected
    assert json.loads(bytes(expected)) == content
