"""One call per event site in the route handlers, each a no-op when no endpoint is configured.

Which requests make which events follows registry:2 v2.8 (``notifications/listener.go`` and
``registry/handlers``): a manifest GET *or HEAD* is a pull (both run ``GetManifest``), as is a blob
GET or HEAD (both run ``ServeBlob``); a committed upload or a monolithic POST is a blob push; a mount
is a mount; deleting a manifest by digest also deletes each tag that pointed at it.
"""

from __future__ import annotations

from starlette.requests import Request

from app.notify.event import BLOB_MEDIA_TYPE, base_url, references, target
from app.notify.notifier import Notifier
from storage import BlobInfo, Manifest, is_tag


def notifier(request: Request) -> Notifier | None:
    found: Notifier | None = getattr(request.app.state, "notifier", None)
    return found


async def manifest(request: Request, action: str, name: str, reference: str, found: Manifest) -> None:
    n = notifier(request)
    if n is None or not n.wants(action, found.media_type):
        return
    digest = str(found.digest)
    event_target = target(
        name,
        digest=digest,
        media_type=found.media_type,
        size=len(found.body),
        url=f"{_base(request, n)}/v2/{name}/manifests/{digest}",  # by digest, so the target is exact
        tag=reference if is_tag(reference) else None,
        references=references(found.body) if n.include_references else None,
    )
    await n.emit(request, action, event_target)


async def blob(request: Request, action: str, name: str, info: BlobInfo, source: str | None = None) -> None:
    """A blob push, pull, or mount (with the repository it came from, when the client named one)."""
    n = notifier(request)
    if n is None or not n.wants(action, BLOB_MEDIA_TYPE):
        return
    digest = str(info.digest)
    event_target = target(
        name,
        digest=digest,
        media_type=BLOB_MEDIA_TYPE,
        size=info.size,
        url=f"{_base(request, n)}/v2/{name}/blobs/{digest}",
        from_repository=source,
    )
    await n.emit(request, action, event_target)


async def deleted(request: Request, name: str, reference: str, tagged: list[str] | None = None) -> None:
    """A manifest, tag or blob delete: registry:2 sends only the repository and the digest or tag."""
    n = notifier(request)
    if n is None or not n.wants("delete"):
        return
    if is_tag(reference):
        await n.emit(request, "delete", target(name, tag=reference))
        return
    await n.emit(request, "delete", target(name, digest=reference))
    for tag in sorted(tagged or []):
        await n.emit(request, "delete", target(name, tag=tag))


def _base(request: Request, n: Notifier) -> str:
    return base_url(request, n.host)
