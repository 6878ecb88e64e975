"""What an image, index, attestation or cache really is, and why docker shows it the way it does.

Works over any ``Source`` (the local store, or a registry over HTTP), reading manifests, small
config/statement blobs and referrers. The result is plain data (``asdict``-able) for text or JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from app.images import buildkit
from storage import Registry, mediatypes
from storage.digest import well_formed_digest
from storage.errors import StorageError

CONFIG_LIMIT = 1 << 20  # configs are small; never read more than this of one
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# JSON may carry a lone surrogate ("\ud800"), which UTF-8 cannot encode.
_SURROGATE = re.compile("[\ud800-\udfff]")


class Source(Protocol):
    async def manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest); raises when unknown."""
        ...

    def unreadable(self, exc: Exception) -> str | None:
        """Why ``manifest`` could not read a document, when ``exc`` says it cannot (unknown, not a
        manifest); None for any other failure."""
        ...

    async def blob(self, name: str, digest: str) -> bytes | None: ...

    async def referrers(self, name: str, digest: str) -> list[dict[str, Any]]: ...


@dataclass
class Entry:
    digest: str
    media_type: str
    kind: str  # image | attestation | cache | artifact | index | blob | unreadable
    platform: str | None = None
    size: int | None = None  # manifest + config + layers
    created: str | None = None
    created_note: str | None = None
    attests: str | None = None  # digest of the image an attestation is for
    attests_platform: str | None = None
    predicates: list[str] = field(default_factory=list)
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    referrers: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None  # why an unreadable entry could not be read


@dataclass
class Report:
    name: str
    reference: str
    digest: str
    media_type: str
    kind: str
    entries: list[Entry]
    findings: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def years_ago(timestamp: datetime, now: datetime) -> int:
    # docker's units.HumanDuration: whole 365-day years
    return int((now - timestamp).total_seconds() // (365 * 24 * 3600))


def printable(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (as Go's JSON decoder reads one), so it encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


# A stored document may hold any JSON where a field is expected: what is not of the field's type is absent,
# or, where there is text to show, shown as its JSON.


def _raw(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _descriptors(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _annotations(value: Any) -> dict[str, str]:
    return {k: _raw(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _platform(value: Any) -> str | None:
    if not isinstance(value, dict) or "os" not in value:
        return None
    parts = [value.get("os"), value.get("architecture"), value.get("variant")]
    return "/".join(_raw(p) for p in parts if p)


def _created(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # RFC 3339 requires an offset; a time without one (a date alone, too) is read as UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def _describe_manifest(
    source: Source, name: str, digest: str, body: bytes, media_type: str, now: datetime
) -> Entry:
    doc = mediatypes.json_object(body)
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    assert isinstance(config, dict)
    layers = _descriptors(doc.get("layers"))
    config_type = config.get("mediaType")
    entry = Entry(digest, media_type, "image", artifact_type=_string(doc.get("artifactType")))
    entry.size = len(body) + sum(_size(x.get("size")) or 0 for x in [config, *layers])
    predicates = [
        _annotations(x.get("annotations")).get("in-toto.io/predicate-type")
        for x in layers
        if x.get("mediaType") == buildkit.IN_TOTO
    ]
    entry.predicates = [p for p in predicates if p]
    if config_type == buildkit.CACHE_CONFIG:
        entry.kind = "cache"
    elif entry.artifact_type == buildkit.ATTESTATION_ARTIFACT or entry.predicates:
        entry.kind = "attestation"
    elif config_type not in (mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG):
        entry.kind = "artifact"
    subject = doc.get("subject")
    if isinstance(subject, dict) and entry.kind == "attestation":
        entry.attests = _string(subject.get("digest"))
    if config_type in (mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG) and isinstance(config.get("digest"), str):
        image_config = mediatypes.json_object(await source.blob(name, config["digest"]))
        entry.platform = _platform(image_config)
        created = image_config.get("created")
        if isinstance(created, str):
            entry.created = created
            when = _created(created)
            if when is not None and when.year <= 1980:
                ago = years_ago(when, now)
                entry.created_note = (
                    f"set to {when.date()} on purpose (reproducible build): docker shows {ago} years ago"
                )
        else:
            ago = years_ago(EPOCH, now)
            entry.created_note = f"Docker's containerd image store reports Created=0, shown as {ago} years ago"
    else:
        entry.created_note = "this is not an image config"
    entry.referrers = await source.referrers(name, digest)
    return entry


async def _describe_child(source: Source, name: str, child: dict[str, Any], now: datetime) -> Entry:
    """An index's manifest child; one the source cannot read is an ``unreadable`` entry saying why."""
    digest = _raw(child.get("digest"))
    if not well_formed_digest(digest):  # storage reads anything else as a tag: a child is never looked up by one
        return Entry(digest, _raw(child.get("mediaType")), "unreadable", problem="its digest is not a valid digest")
    try:
        body, media_type, digest = await source.manifest(name, digest)
    except Exception as exc:
        # Deleted by digest (nothing stops that while an index lists it), or a blob listed as a manifest.
        problem = source.unreadable(exc)
        if problem is None:
            raise
        return Entry(digest, _raw(child.get("mediaType")), "unreadable", problem=f"cannot be read: {problem}")
    return await _describe_manifest(source, name, digest, body, media_type, now)


async def explain(
    source: Source, name: str, reference: str, platform: str | None = None, now: datetime | None = None
) -> Report:
    now = now or datetime.now(UTC)
    body, media_type, digest = await source.manifest(name, reference)
    doc = mediatypes.json_object(body)
    entries: list[Entry] = []
    if media_type in mediatypes.INDEXES:
        kind = "index"
        for child in _descriptors(doc.get("manifests")):
            child_type = _raw(child.get("mediaType"))
            annotations = _annotations(child.get("annotations"))
            if child_type not in mediatypes.MANIFESTS:
                entry = Entry(
                    _raw(child.get("digest")),
                    child_type,
                    "blob",
                    size=_size(child.get("size")),
                    annotations=annotations,
                )
            else:
                entry = await _describe_child(source, name, child, now)
                entry.annotations = annotations
            entry.platform = _platform(child.get("platform")) or entry.platform
            if annotations.get(buildkit.REF_TYPE) == "attestation-manifest":
                entry.kind = "attestation"
                entry.attests = annotations.get(buildkit.REF_DIGEST)
            entries.append(entry)
        # BuildKit's legacy cache index: children are layer blobs plus the cache config.
        if any(e.media_type == buildkit.CACHE_CONFIG for e in entries):
            kind = "cache"
    else:
        entry = await _describe_manifest(source, name, digest, body, media_type, now)
        entries.append(entry)
        kind = entry.kind
    by_digest = {e.digest: e for e in entries}
    for e in entries:
        if e.attests and e.attests in by_digest:
            e.attests_platform = by_digest[e.attests].platform
    return Report(
        name, reference, digest, media_type, kind, entries, _findings(kind, media_type, entries, platform, now)
    )


REMEDIES = (
    "To push without attestations: `docker buildx build --provenance=false --sbom=false`, or "
    "`BUILDX_NO_DEFAULT_ATTESTATIONS=1` (drops only the default provenance); in GitHub Actions "
    "`provenance: false` and `sbom: false` on docker/build-push-action."
)


def _findings(
    kind: str, media_type: str, entries: list[Entry], platform: str | None, now: datetime
) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    epoch_years = years_ago(EPOCH, now)
    attestations = [e for e in entries if e.kind == "attestation"]
    images = [e for e in entries if e.kind == "image"]
    if attestations and media_type in mediatypes.INDEXES:
        found.append(
            {
                "id": "attestations-in-index",
                "title": f"{len(attestations)} attestation manifest(s) listed as platform unknown/unknown",
                "text": (
                    "BuildKit (buildx >= 0.10, and plain `docker build` with the containerd image store) stores "
                    "provenance/SBOM attestations as extra entries of the image index, with platform "
                    "unknown/unknown and the annotation vnd.docker.reference.digest naming the image they "
                    "describe. They are not runnable images: `docker buildx imagetools inspect` shows them as "
                    "unknown/unknown, registry UIs list them as separate untagged images of a few KiB, and "
                    "anything that reads their config's `created` (which they do not have) shows 1970 - "
                    f"'{epoch_years} years ago'. Pulls by platform ignore them, but `ctr images pull "
                    "--all-platforms` (and ECS) try to unpack their in-toto layers and fail with 'no processor "
                    "for media-type: unknown'. " + REMEDIES
                ),
            }
        )
    if any(
        e.attests and e.kind == "attestation" and e.artifact_type == buildkit.ATTESTATION_ARTIFACT for e in attestations
    ):
        found.append(
            {
                "id": "oci-artifact-attestations",
                "title": "attestations use the OCI artifact encoding (subject + empty config)",
                "text": (
                    "BuildKit >= 0.32 writes attestations as OCI 1.1 artifacts: artifactType "
                    "application/vnd.docker.attestation.manifest.v1+json, the 2-byte empty config and a "
                    "`subject` pointing at the image, so the referrers API lists them too. Registries that "
                    "reject `subject` need the exporter option oci-artifact=false."
                ),
            }
        )
    unreadable = [e for e in entries if e.kind == "unreadable"]
    if unreadable:
        found.append(
            {
                "id": "unreadable-entries",
                "title": f"{len(unreadable)} entr{'y' if len(unreadable) == 1 else 'ies'} of the index cannot be read",
                "text": (
                    "Each is listed as a manifest but is none of this repository's: it was deleted by digest "
                    "after the index was pushed (nothing stops that), or it is a blob listed with a manifest "
                    "media type, or its digest is not one. A pull that picks such an entry fails with "
                    "'manifest unknown'; the other entries are unaffected."
                ),
            }
        )
    unset = [e for e in images if e.created is None]
    if unset:
        found.append(
            {
                "id": "created-not-set",
                "title": "an image config has no `created`",
                "text": (
                    f"docker shows such an image as created {epoch_years} years ago (Created=0); "
                    "`created` is optional in the OCI spec."
                ),
            }
        )
    if any(e.created_note and "on purpose" in e.created_note for e in entries):
        found.append(
            {
                "id": "epoch-created",
                "title": "created is set to the epoch (reproducible build)",
                "text": (
                    "SOURCE_DATE_EPOCH=0, ko, Bazel, Nix, Jib and Buildpacks set `created` to 1970/1980 on "
                    "purpose so that rebuilds are byte-identical; docker shows 'N years ago'. Set "
                    "SOURCE_DATE_EPOCH to the commit time if you want a meaningful date."
                ),
            }
        )
    if kind == "cache":
        found.append(
            {
                "id": "build-cache",
                "title": "this is a BuildKit registry cache, not an image",
                "text": (
                    "Written by `--cache-to type=registry`. It is read back by `--cache-from`; `docker pull` "
                    "or `docker run` of it fails. "
                    + (
                        "This is the legacy form (BuildKit < 0.21 or image-manifest=false): an index whose "
                        "children are layer blobs, which strict registries reject and Kura accepts."
                        if media_type in mediatypes.INDEXES
                        else "It is an image manifest whose config type is application/vnd.buildkit.cacheconfig.v0."
                    )
                ),
            }
        )
    if media_type in mediatypes.IMAGE_MANIFESTS and kind == "image":
        only = entries[0].platform or "unknown"
        found.append(
            {
                "id": "single-platform",
                "title": f"single-platform image ({only}) without an index",
                "text": (
                    "A host of another platform pulls it anyway and fails at run time (Windows: 'image operating "
                    "system \"linux\" cannot be used on this platform'; ARM vs amd64: 'exec format error'). Build "
                    "with `--platform linux/amd64,linux/arm64` to publish an index."
                ),
            }
        )
    if platform is not None and media_type in mediatypes.INDEXES and kind != "cache":
        available = sorted({e.platform for e in images if e.platform})
        if platform not in available:
            found.append(
                {
                    "id": "no-matching-platform",
                    "title": f"no entry for {platform}",
                    "text": (
                        f"docker pull --platform {platform} fails with 'no matching manifest for {platform} in the "
                        f"manifest list entries'. Available: {', '.join(available) or 'none'} (unknown/unknown "
                        "entries are attestations and never match)."
                    ),
                }
            )
    return found


def render(report: Report, repository: str, reference: str) -> str:
    """Text like ``docker buildx imagetools inspect``, plus what it leaves out.

    ``repository`` is the name as the user wrote it (with its registry host, if any).
    """
    separator = "@" if ":" in reference else ":"
    out = [
        f"Name:      {repository}{separator}{reference}",
        f"MediaType: {report.media_type}",
        f"Digest:    {report.digest}",
        f"Kind:      {report.kind}",
    ]
    if report.media_type in mediatypes.INDEXES:
        out += ["", "Manifests:"]
    for e in report.entries:
        out += [""]
        out.append(f"  Name:        {repository}@{e.digest}")
        out.append(f"  MediaType:   {e.media_type}")
        out.append(f"  Kind:        {e.kind}")
        if e.platform:
            out.append(f"  Platform:    {e.platform}")
        if e.size is not None:
            out.append(f"  Size:        {e.size} bytes")
        if e.artifact_type:
            out.append(f"  ArtifactType: {e.artifact_type}")
        if e.attests:
            target = f"{e.attests_platform} image " if e.attests_platform else "image "
            out.append(f"  Attests:     {target}{e.attests}")
        if e.predicates:
            out.append(f"  Predicates:  {', '.join(e.predicates)}")
        if e.problem:
            out.append(f"  Problem:     {e.problem}")
        elif e.kind != "blob":
            out.append(f"  Created:     {e.created or 'not set'}" + (f" ({e.created_note})" if e.created_note else ""))
        if e.annotations:
            out.append("  Annotations:")
            width = max(len(k) for k in e.annotations)
            out += [f"    {k + ':':<{width + 1}} {v}" for k, v in sorted(e.annotations.items())]
        if e.referrers:
            out.append("  Referrers:")
            out += [f"    {r.get('digest')} {r.get('artifactType', '')}".rstrip() for r in e.referrers]
    if report.findings:
        out += ["", "Explanation:"]
        for f in report.findings:
            out += [f"  * {f['title']}", *[f"    {line}" for line in _wrap(f["text"], 96)]]
    return printable("\n".join(out) + "\n")


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


class LocalSource:
    """Reads from a store on this machine (``kura inspect --root``, and the server's own endpoint)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        m = await self.registry.get_manifest(name, reference)
        return m.body, m.media_type, str(m.digest)

    def unreadable(self, exc: Exception) -> str | None:
        return exc.message if isinstance(exc, StorageError) else None

    async def blob(self, name: str, digest: str) -> bytes | None:
        try:
            info, reader = await self.registry.open_blob(name, digest)
        except StorageError:
            return None
        try:
            if info.size > CONFIG_LIMIT:
                return None
            return b"".join([chunk async for chunk in reader.chunks()])
        finally:
            reader.close()

    async def referrers(self, name: str, digest: str) -> list[dict[str, Any]]:
        return await self.registry.list_referrers(name, digest)
