from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import byte_range, etag, not_modified, ranged, registry
from app.notify import hooks as notify
from app.responses import BlobResponse
from storage import BlobInfo


def blob_headers(info: BlobInfo) -> dict[str, str]:
    digest = str(info.digest)
    return {
        "Docker-Content-Digest": digest,
        "ETag": etag(digest),
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }


def _unchanged(info: BlobInfo) -> Response:
    """304 for a client that has the blob (If-None-Match), with the headers a 200 has but no body's
    (as Go's http.ServeContent, which registry:2 serves blobs with)."""
    return Response(status_code=304, headers=blob_headers(info))


async def head_blob(request: Request) -> Response:
    name = request.path_params["name"]
    info = await registry(request).stat_blob(name, request.path_params["digest"])
    await notify.blob(request, "pull", name, info)
    if not_modified(request, str(info.digest)):
        return _unchanged(info)
    headers = blob_headers(info) | {"Content-Length": str(info.size)}
    return Response(headers=headers, media_type="application/octet-stream")


async def get_blob(request: Request) -> Response:
    if request.method == "HEAD":
        return await head_blob(request)
    name = request.path_params["name"]
    info, reader = await registry(request).open_blob(name, request.path_params["digest"])
    try:
        unchanged = not_modified(request, str(info.digest))
        span = None if unchanged else byte_range(ranged(request, str(info.digest)), info.size)
        await notify.blob(request, "pull", name, info)
    except BaseException:
        reader.close()
        raise
    if unchanged:
        reader.close()
        return _unchanged(info)
    headers = blob_headers(info)
    if span is None:
        return BlobResponse(reader, headers | {"Content-Length": str(info.size)})
    start, end = span
    headers |= {"Content-Length": str(end - start + 1), "Content-Range": f"bytes {start}-{end}/{info.size}"}
    return BlobResponse(reader, headers, status_code=206, span=span)


async def delete_blob(request: Request) -> Response:
    name, digest = request.path_params["name"], request.path_params["digest"]
    await registry(request).delete_blob(name, digest)
    await notify.deleted(request, name, digest)
    return Response(status_code=202, headers={"Content-Length": "0"})
