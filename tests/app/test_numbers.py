"""Numbers in query parameters and headers: ASCII digits of a bounded length, or a 4xx (never a 500).

Python's ``str.isdigit`` accepts '²' (which ``int`` then refuses) and ``int`` refuses more than 4300
digits; both used to escape as 500s.
"""

from __future__ import annotations

import httpx
import pytest

from tests.oci import push_blob

SUPERSCRIPT_TWO = "%C2%B2"
HUGE = "1" * 5000


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


@pytest.mark.parametrize("n", [SUPERSCRIPT_TWO, HUGE, "-1", "+1", "1e3", "99999999999999999999"])
@pytest.mark.parametrize("path", ["/v2/r/tags/list", "/v2/_catalog"])
async def test_bad_page_sizes_are_pagination_number_invalid(client: httpx.AsyncClient, path: str, n: str) -> None:
    await push_blob(client, "r", b"x")
    r = await client.get(f"{path}?n={n}")
    assert r.status_code == 400 and error_code(r) == "PAGINATION_NUMBER_INVALID"


async def test_page_sizes_that_are_numbers_still_page(client: httpx.AsyncClient) -> None:
    for repo in ("a", "b", "c"):
        await push_blob(client, repo, b"x")
    r = await client.get("/v2/_catalog?n=2")
    assert r.json() == {"repositories": ["a", "b"]} and r.headers["link"] == '</v2/_catalog?n=2&last=b>; rel="next"'
    # More than catalog.maxentries is clamped to it, with a Link when more follow (the spec's MAY).
    r = await client.get("/v2/_catalog?n=9223372036854775807")
    assert r.status_code == 200 and r.json() == {"repositories": ["a", "b", "c"]}


@pytest.mark.parametrize("value", ["\xb2", HUGE, "-1", " 1"])
async def test_bad_content_length_is_size_invalid(client: httpx.AsyncClient, value: str) -> None:
    location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    # Raw bytes, as a client could send them: latin-1 is how the header reaches the app.
    r = await client.patch(location, headers={b"Content-Length": value.encode("latin-1")})
    assert r.status_code == 400 and error_code(r) == "SIZE_INVALID"


@pytest.mark.parametrize("value", [f"0-{HUGE}", f"{HUGE}-{HUGE}", "0-\xb2", "\xb2-\xb2"])
async def test_bad_content_range_is_416(client: httpx.AsyncClient, value: str) -> None:
    location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    r = await client.patch(location, content=b"x", headers={b"Content-Range": value.encode("latin-1")})
    assert r.status_code == 416 and error_code(r) == "RANGE_INVALID"


async def test_huge_range_positions_are_past_the_end(client: httpx.AsyncClient) -> None:
    data = bytes(range(100))
    digest = await push_blob(client, "r", data)
    url = f"/v2/r/blobs/{digest}"
    r = await client.get(url, headers={"Range": f"bytes={HUGE}-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */100"
    r = await client.get(url, headers={"Range": f"bytes=10-{HUGE}"})
    assert r.status_code == 206 and r.content == data[10:]
    r = await client.get(url, headers={"Range": f"bytes=-{HUGE}"})
    assert r.status_code == 206 and r.content == data
    # A Range that is not ASCII digits is not a range we know: the whole blob, as RFC 9110 allows.
    r = await client.get(url, headers={b"Range": b"bytes=\xb2-"})
    assert r.status_code == 200 and r.content == data
