"""Explaining manifests and configs that are odd but stored: inspect, its endpoint and the UI never fail on them.

A PUT refuses some of these today; roots written by registry:2 or an older Kura may hold them all.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.images import buildkit, explain
from app.images.remote import RemoteSource
from storage import Registry, links, mediatypes, paths, tags
from storage.digest import Digest
from storage.names import Name
from tests.oci import descriptor, push_blob, push_image, random_image

NOW = datetime(2026, 11, 23, tzinfo=UTC)
REPO = "odd/app"


async def stored(app: Starlette, document: dict[str, Any], tag: str | None = None) -> str:
    """Write a manifest as an old root may hold it: its bytes, revision link and tag, none of a PUT's checks."""
    registry: Registry = app.state.registry
    body = json.dumps(document).encode()
    digest = Digest.of_bytes(body)
    await registry.driver.put_content(paths.blob_data(digest), body)
    await links.write(registry.driver, paths.manifest_revision_link(REPO, digest), digest)
    if tag is not None:
        await tags.point(registry.driver, Name(REPO), tag, digest)
    return str(digest)


async def image(client: httpx.AsyncClient, config: bytes, *layers: dict[str, Any]) -> dict[str, Any]:
    """An image manifest over a pushed config and one pushed layer, plus ``layers`` as given."""
    layer = b"odd layer"
    await push_blob(client, REPO, config)
    await push_blob(client, REPO, layer)
    return {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": descriptor(mediatypes.OCI_CONFIG, config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer), *layers],
    }


def index(*children: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": list(children)}


async def explained(app: Starlette, reference: str) -> explain.Report:
    return await explain.explain(explain.LocalSource(app.state.registry), REPO, reference, now=NOW)


async def test_a_created_without_timezone_is_read_as_utc(app: Starlette, client: httpx.AsyncClient) -> None:
    for tag, created in [("naive", "1970-01-01T00:00:00"), ("date", "1970-01-01")]:
        config = json.dumps({"architecture": "amd64", "os": "linux", "created": created}).encode()
        await stored(app, await image(client, config), tag)
        entry = (await explained(app, tag)).entries[0]
        assert entry.created == created and entry.platform == "linux/amd64"
        assert (
            entry.created_note is not None and "on purpose" in entry.created_note and "56 years" in entry.created_note
        )


async def test_fields_of_the_wrong_type_are_treated_as_absent(app: Starlette, client: httpx.AsyncClient) -> None:
    statement = b'{"_type": "https://in-toto.io/Statement/v0.1"}'
    await push_blob(client, REPO, statement)
    odd_layers = [
        descriptor(buildkit.IN_TOTO, statement, annotations=None),
        descriptor(buildkit.IN_TOTO, statement, annotations=[1]),
        {**descriptor("application/vnd.oci.image.layer.v1.tar", statement), "size": "big"},
        {**descriptor("application/vnd.oci.image.layer.v1.tar", statement), "size": float("nan")},
        {**descriptor("application/vnd.oci.image.layer.v1.tar", statement), "size": True},
    ]
    document = await image(client, b'{"os": "linux", "created": 5}', *odd_layers)
    document["config"]["size"] = 1.5
    document["artifactType"] = {"not": "a string"}
    digest = await stored(app, document, "types")
    body = json.dumps(document).encode()
    entry = (await explained(app, "types")).entries[0]
    assert (entry.kind, entry.predicates, entry.artifact_type) == ("image", [], None)
    assert entry.size == len(body) + len(b"odd layer") + 2 * len(statement)
    assert entry.created is None and entry.platform == "linux"

    predicate = {"in-toto.io/predicate-type": buildkit.PROVENANCE_V02}
    attestation = await image(
        client, b'{"os": "linux"}', descriptor(buildkit.IN_TOTO, statement, annotations=predicate)
    )
    await stored(app, {**attestation, "subject": {"digest": 5}}, "attestation")
    entry = (await explained(app, "attestation")).entries[0]
    assert (entry.kind, entry.predicates, entry.attests) == ("attestation", [buildkit.PROVENANCE_V02], None)

    document["layers"] = 5
    await stored(app, document, "layers")
    assert (await explained(app, "layers")).entries[0].size == len(json.dumps(document).encode())

    r = await client.get(f"/_kura/v1/inspect/{REPO}/manifests/types")
    assert r.status_code == 200 and r.json()["digest"] == digest
    for tag in ("types", "layers"):
        assert (await client.get(f"/r/{REPO}/-/manifests/{tag}")).status_code == 200


async def test_a_config_nested_too_deeply_is_no_config(app: Starlette, client: httpx.AsyncClient) -> None:
    await stored(app, await image(client, b"[" * 100_000), "deep")
    entry = (await explained(app, "deep")).entries[0]
    assert entry.kind == "image" and entry.platform is None and entry.created is None


async def test_an_index_lists_what_it_cannot_read(app: Starlette, client: httpx.AsyncClient) -> None:
    child = await image(client, b'{"os": "linux", "architecture": "arm64"}')
    child_digest = await stored(app, child, "latest")
    gone = await stored(app, await image(client, b'{"os": "linux"}', descriptor("text/plain", b"x")))
    await client.delete(f"/v2/{REPO}/manifests/{gone}")
    layer = child["layers"][0]
    await stored(
        app,
        index(
            {**descriptor(mediatypes.OCI_MANIFEST, json.dumps(child).encode()), "annotations": [1], "platform": "x"},
            {**layer, "mediaType": mediatypes.OCI_MANIFEST},  # a layer blob listed as a manifest
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": gone, "size": 2},  # deleted by digest
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": "latest"},  # a tag, not a digest
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": 5, "size": float("nan")},
            {"mediaType": 5, "digest": layer["digest"], "size": "big", "annotations": {"k": ["raw"]}},
            "not a descriptor",
        ),
        "index",
    )
    report = await explained(app, "index")
    assert report.kind == "index"
    readable, *unreadable, blob = report.entries
    assert (readable.digest, readable.kind, readable.platform, readable.annotations) == (
        child_digest,
        "image",
        "linux/arm64",
        {},
    )
    assert [(e.digest, e.kind) for e in unreadable] == [
        (layer["digest"], "unreadable"),
        (gone, "unreadable"),
        ("latest", "unreadable"),
        ("5", "unreadable"),
    ]
    assert all(e.problem and e.size is None for e in unreadable[2:])
    assert unreadable[0].problem is not None and "manifest unknown" in unreadable[0].problem
    assert (blob.kind, blob.media_type, blob.size, blob.annotations) == ("blob", "5", None, {"k": '["raw"]'})
    assert "unreadable-entries" in {f["id"] for f in report.findings}
    text = explain.render(report, REPO, "index")
    assert "Problem:" in text and "Created:     not set" not in text.split("Kind:        unreadable")[1]

    r = await client.get(f"/_kura/v1/inspect/{REPO}/manifests/index")
    assert r.status_code == 200 and [e["kind"] for e in r.json()["entries"]].count("unreadable") == 4
    remote = await explain.explain(RemoteSource(client), REPO, "index", now=NOW)  # kura inspect host/name:tag
    assert [e.kind for e in remote.entries] == [e.kind for e in report.entries]
    assert remote.entries[1].problem == "cannot be read: HTTP 404"

    page = await client.get(f"/r/{REPO}/-/manifests/index")
    assert page.status_code == 200
    assert f'href="/r/{REPO}/-/manifests/{gone}"' not in page.text
    assert f'href="/r/{REPO}/-/manifests/{child_digest}"' in page.text


async def test_an_image_manifest_listing_manifests_is_explained(app: Starlette, client: httpx.AsyncClient) -> None:
    for tag, manifests in [("five", 5), ("odd", [{"mediaType": mediatypes.OCI_MANIFEST, "digest": 5}])]:
        document = await image(client, b'{"os": "linux"}')
        del document["mediaType"]  # detected as an index, as registry:2 does
        await stored(app, {**document, "manifests": manifests}, tag)
        r = await client.get(f"/_kura/v1/inspect/{REPO}/manifests/{tag}")
        assert r.status_code == 200 and r.json()["kind"] == "index"
        assert (await client.get(f"/r/{REPO}/-/manifests/{tag}")).status_code == 200


async def test_lone_surrogates_are_written_as_valid_text(app: Starlette, client: httpx.AsyncClient) -> None:
    document = await image(client, b'{"os": "linux\\ud800", "created": "1970-01-01T00:00:00Z\\udc00"}')
    document["annotations"] = {"org.example\ud800": "value\udfff"}
    await stored(app, document, "surrogates")
    body = json.dumps(document).encode()
    await stored(app, index(descriptor(mediatypes.OCI_MANIFEST, body, annotations=document["annotations"])), "s")
    r = await client.get(f"/_kura/v1/inspect/{REPO}/manifests/s")
    assert r.status_code == 200
    entry = r.json()["entries"][0]
    assert (entry["annotations"], entry["platform"]) == ({"org.example\ufffd": "value\ufffd"}, "linux\ufffd")
    text = explain.render(await explained(app, "s"), REPO, "s")
    assert "linux\ufffd" in text and text.encode()
    for url in [f"/r/{REPO}", f"/r/{REPO}/-/manifests/s", f"/r/{REPO}/-/manifests/surrogates"]:
        page = await client.get(url)
        assert page.status_code == 200 and "linux\ufffd" in page.text, url
    assert "org.example\ufffd" in page.text


async def test_the_repository_page_lists_every_tag(app: Starlette, client: httpx.AsyncClient) -> None:
    await push_image(client, REPO, random_image(layers=1, seed=11), "fine")
    naive = b'{"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00"}'
    in_toto = descriptor(buildkit.IN_TOTO, b"odd layer", annotations=None)
    await stored(app, await image(client, naive, in_toto), "naive")
    lost = await stored(app, await image(client, b'{"os": "linux"}', descriptor("text/plain", b"lost")), "lost")
    del_child = await stored(app, await image(client, b'{"os": "linux", "architecture": "s390x"}'))
    await stored(app, index({**descriptor(mediatypes.OCI_MANIFEST, b"x"), "digest": del_child}), "index")
    await client.delete(f"/v2/{REPO}/manifests/{del_child}")
    await app.state.registry.driver.delete(paths.blob_data(Digest.parse(lost)))  # its bytes are gone

    page = await client.get(f"/r/{REPO}")
    assert page.status_code == 200
    assert re.findall(rf'<td><a href="/r/{REPO}/-/manifests/([^"]+)">', page.text) == ["fine", "index", "lost", "naive"]
    row = page.text[page.text.index('manifests/lost"') : page.text.index('manifests/naive"')]
    assert ">unexplained</span>" in row
    naive_row = page.text[page.text.index('manifests/naive"') :]
    assert "1970-01-01" in naive_row and "on purpose" in naive_row

    assert (await client.get(f"/r/{REPO}/-/tags/lost/history")).status_code == 200


async def test_a_tag_whose_explanation_fails_is_shown_unexplained(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push_image(client, REPO, random_image(layers=1, seed=12), "fine")
    broken = await push_image(client, REPO, random_image(layers=1, seed=13), "broken")
    real = explain.explain

    async def failing(source: explain.Source, name: str, reference: str, *args: Any) -> explain.Report:
        if reference == broken:
            raise RuntimeError("a bug in the explanation")
        return await real(source, name, reference, *args)

    monkeypatch.setattr(explain, "explain", failing)
    page = await client.get(f"/r/{REPO}")
    assert page.status_code == 200
    assert re.findall(r'<span class="kind kind-(\w+)">', page.text) == ["unexplained", "image"]
    history = await client.get(f"/r/{REPO}/-/tags/broken/history")
    assert history.status_code == 200 and "<td>unexplained</td>" in history.text
