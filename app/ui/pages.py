"""The pages that read: repositories, a repository's tags, a manifest, a tag's history, storage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from app.auth.catalog import visible_page
from app.images import explain
from app.ui.render import natural
from app.ui.visit import Visit
from storage import browse, mediatypes

REPOSITORIES_PAGE = 50
TAGS_PAGE = 100
STORAGE_ROWS = 200
REFERRER_DEPTH = 4  # a signature of an SBOM of an image is depth 2; deeper chains are cut
CONFIG_SHOWN = 64 * 1024
_PAGE = re.compile(r"[0-9]{1,6}")


def _page_number(visit: Visit) -> int:
    # ASCII digits only: str.isdigit() takes "²", which int() refuses.
    value = visit.request.query_params.get("page", "1")
    return max(1, int(value)) if _PAGE.fullmatch(value) else 1


def _namespace(name: str) -> str:
    return name.rpartition("/")[0]


async def repositories(visit: Visit) -> Any:
    params = visit.request.query_params
    query = params.get("q", "").strip().lower()
    after = params.get("after") or None

    def wanted(name: str) -> bool:
        return query in name and visit.viewer.sees(name)

    names, more = await visible_page(visit.registry, wanted, REPOSITORIES_PAGE, after)
    groups: dict[str, list[browse.RepositorySummary]] = {}
    for name in names:
        groups.setdefault(_namespace(name), []).append(await browse.summary(visit.registry, name, visit.site.sizes))
    return visit.page(
        "repositories.html", groups=groups, q=query, after=after, next_after=names[-1] if more and names else None
    )


@dataclass(slots=True)
class TagRow:
    link: browse.TagLink
    kind: str
    platforms: list[tuple[str, int | None]]
    size: int | None
    created: str | None
    created_note: str | None
    attestations: int


def tag_row(link: browse.TagLink, report: explain.Report | None) -> TagRow:
    if report is None:
        return TagRow(link, "unexplained", [], None, None, None, 0)
    images = [e for e in report.entries if e.kind == "image"]
    platforms = [(e.platform or "unknown", e.size) for e in images]
    sizes = [e.size for e in report.entries if e.size is not None]
    created = next((e.created for e in images if e.created), None)
    fallback = images[0] if images else (report.entries[0] if report.entries else None)
    described = next((e for e in images if e.created == created), fallback)
    note = described.created_note if described is not None else None
    attestations = sum(e.kind == "attestation" for e in report.entries) if report.kind == "index" else 0
    return TagRow(link, report.kind, platforms, sum(sizes) if sizes else None, created, note, attestations)


async def repository(visit: Visit) -> Any:
    name = visit.request.path_params["name"]
    visit.need("pull", name)
    params = visit.request.query_params
    query = params.get("q", "").strip()
    names, _ = await visit.registry.list_tags(name)
    chosen = sorted((t for t in names if query in t), key=natural)
    pages = max(1, -(-len(chosen) // TAGS_PAGE))
    number = min(_page_number(visit), pages)
    shown = chosen[(number - 1) * TAGS_PAGE : number * TAGS_PAGE]
    rows = [
        tag_row(link, await visit.site.summary(visit.registry, name, str(link.digest)))
        for link in await browse.tag_links(visit.registry, name, shown, visit.site.tags)
    ]
    return visit.page(
        "repository.html",
        name=name,
        summary=await browse.summary(visit.registry, name, visit.site.sizes),
        rows=rows,
        q=query,
        matching=len(chosen),
        number=number,
        pages=pages,
        deleted=params.get("deleted"),
    )


@dataclass(slots=True)
class Referrer:
    digest: str
    artifact_type: str | None
    annotations: dict[str, str]
    children: list[Referrer] = field(default_factory=list)


async def _referrer_tree(
    visit: Visit, name: str, descriptors: list[dict[str, Any]], depth: int, seen: set[str]
) -> list[Referrer]:
    tree: list[Referrer] = []
    for descriptor in descriptors:
        digest = str(descriptor.get("digest"))
        annotations = descriptor.get("annotations") or {}
        node = Referrer(digest, descriptor.get("artifactType"), {str(k): str(v) for k, v in annotations.items()})
        if digest not in seen and depth < REFERRER_DEPTH:
            seen.add(digest)
            below = await visit.registry.list_referrers(name, digest)
            node.children = await _referrer_tree(visit, name, below, depth + 1, seen)
        tree.append(node)
    return tree


@dataclass(slots=True)
class Layer:
    role: str  # config | layer
    media_type: str
    digest: str
    size: int | None
    shared_by: int | None  # repositories that link this blob; None until a usage walk is done
    annotations: dict[str, str]


async def _layers(visit: Visit, document: dict[str, Any]) -> list[Layer]:
    usage = visit.site.known_usage(visit.registry)
    layers = document.get("layers")
    listed = layers if isinstance(layers, list) else []  # a stored manifest may hold anything here
    described = [("config", document.get("config"))] + [("layer", x) for x in listed]
    found: list[Layer] = []
    for role, item in described:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
            continue
        size = item.get("size")
        annotations = item.get("annotations") if isinstance(item.get("annotations"), dict) else {}
        assert isinstance(annotations, dict)
        found.append(
            Layer(
                role,
                str(item.get("mediaType", "")),
                item["digest"],
                size if isinstance(size, int) else None,
                None if usage is None else usage.sharing(item["digest"]),
                {str(k): str(v) for k, v in annotations.items()},
            )
        )
    return found


async def _config_text(source: explain.LocalSource, name: str, layers: list[Layer]) -> str | None:
    config = next((x for x in layers if x.role == "config"), None)
    if config is None or config.size is None or config.size > CONFIG_SHOWN:
        return None
    raw = await source.blob(name, config.digest)
    if raw is None:
        return None
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


async def manifest(visit: Visit) -> Any:
    name, reference = visit.request.path_params["name"], visit.request.path_params["reference"]
    visit.need("pull", name)
    source = explain.LocalSource(visit.registry)
    report = await explain.explain(source, name, reference)
    stored = await visit.registry.get_manifest(name, report.digest)
    document = mediatypes.json_object(stored.body)
    is_index = report.media_type in mediatypes.INDEXES
    layers = [] if is_index else await _layers(visit, document)
    seen = {report.digest}
    # For a single manifest the explanation listed its referrers already: one scan of the revisions, not two.
    own = next((e.referrers for e in report.entries if e.digest == report.digest), None)
    if own is None:
        own = await visit.registry.list_referrers(name, report.digest)
    referrers = await _referrer_tree(visit, name, own, 1, seen)
    children = {
        e.digest: await _referrer_tree(visit, name, e.referrers, 1, seen)
        for e in report.entries
        if e.referrers and e.digest != report.digest
    }
    annotations = document.get("annotations") if isinstance(document.get("annotations"), dict) else {}
    tags = sorted(await browse.pointing_at(visit.registry, name, report.digest, visit.site.tags), key=natural)
    platforms = sorted({e.platform for e in report.entries if e.kind == "image" and e.platform}) if is_index else []
    return visit.page(
        "manifest.html",
        name=name,
        reference=reference,
        report=report,
        is_index=is_index,
        single=None if is_index else report.entries[0],
        tags=tags,
        pull_tag=reference if ":" not in reference else (tags[0] if tags else None),
        platforms=platforms,
        layers=layers,
        config=await _config_text(source, name, layers),
        referrers=referrers,
        child_referrers=children,
        annotations={str(k): str(v) for k, v in (annotations or {}).items()},
        raw=json.dumps(document, indent=2, ensure_ascii=False),
    )


async def history(visit: Visit) -> Any:
    name, tag = visit.request.path_params["name"], visit.request.path_params["tag"]
    visit.need("pull", name)
    entries = await browse.history(visit.registry, name, tag)
    kinds: dict[str, str] = {}
    for e in entries:
        if e.present:
            report = await visit.site.summary(visit.registry, name, str(e.digest))
            kinds[str(e.digest)] = "unexplained" if report is None else report.kind
    return visit.page(
        "history.html",
        name=name,
        tag=tag,
        entries=entries,
        kinds=kinds,
        may_restore=visit.viewer.may("push", name) and not visit.registry.options.read_only,
        restored=visit.request.query_params.get("restored"),
    )


async def storage(visit: Visit) -> Any:
    usage = await visit.site.usage(visit.registry)
    visible = sorted(
        ((name, usage.size_of(name), len(found)) for name, found in usage.linked.items() if visit.viewer.sees(name)),
        key=lambda row: (-row[1], row[0]),
    )
    runs = await browse.gc_runs(visit.registry) if visit.viewer.everything else []
    return visit.page(
        "storage.html",
        usage=usage if visit.viewer.everything else None,
        rows=visible[:STORAGE_ROWS],
        hidden=max(0, len(visible) - STORAGE_ROWS),
        runs=runs,
    )
