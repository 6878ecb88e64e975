from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import byte_range, registry
from app.notify import hooks as notify
from app.responses import BlobResponse
from storage import BlobInfo


def blob_headers(info: BlobInfo) -> dict[str, str]:
    digest = str(info.digest)
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }


async def head_blob(request: Request) -> Response:
    name = request.path_params["name"]
    info = await registry(request).stat_blob(name, request.path_params["digest"])
    await notify.blob(request, "pull", name, info)
    headers = blob_headers(info) | {"Content-Length": str(info.size)}
    return Response(headers=headers, media_type="application/octet-stream")


async def get_blob(request: Request) -> Response:
    if request.method == "HEAD":
        return await head_blob(request)
    name = request.path_params["name"]
    info, reader = await registry(request).open_blob(name, request.path_params["digest"])
    try:
        span = byte_range(request.headers.get("range"), info.size)
        await notify.blob(request, "pull", name, info)
    except BaseException:
        reader.close()
        raise
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
