from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from app.errors import Code, OCIError
from app.http import body, content_length, content_range, has_body, registry, upload_range
from app.notify import hooks as notify
from storage import BlobInfo
from storage.errors import DigestInvalid, NameInvalid


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _created(name: str, info: BlobInfo) -> Response:
    digest = str(info.digest)
    headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest, "Content-Length": "0"}
    return Response(status_code=201, headers=headers)


def _session(name: str, upload_id: str, size: int, status: int) -> Response:
    headers = {
        "Location": _upload_location(name, upload_id),
        "Docker-Upload-UUID": upload_id,
        "Range": upload_range(size),
        "Content-Length": "0",
    }
    return Response(status_code=status, headers=headers)


def mount_of(query: QueryParams) -> tuple[str, str | None] | None:
    """The blob a POST asks to mount, with the repository to mount it from (None: any, and an empty
    ``from`` is none); None when it asks for no mount. Auth decides on exactly what this reads."""
    mount = query.get("mount")
    if mount is None:
        return None
    return mount, query.get("from") or None


async def start_upload(request: Request) -> Response:
    name = request.path_params["name"]
    reg = registry(request)
    query = request.query_params
    asked = mount_of(query)
    if asked is not None:
        mount, source = asked
        try:
            info = await reg.mount_blob(name, mount, source)
        except (DigestInvalid, NameInvalid):
            # registry:2 ignores a mount whose digest or source it cannot parse and opens a session
            # (the spec's 202). A bad target name is still refused, by start_upload below.
            info = None
        if info is not None:
            await notify.blob(request, "mount", name, info, source)
            return _created(name, info)
    elif "digest" in query:
        # Monolithic upload in a single POST (spec: end-4b).
        info = await reg.put_blob(name, query["digest"], body(request), content_length(request))
        await notify.blob(request, "push", name, info)
        return _created(name, info)
    upload_id = await reg.start_upload(name)
    return _session(name, upload_id, 0, 202)


async def upload_status(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["upload_id"]
    size = await registry(request).upload_size(name, upload_id)
    return _session(name, upload_id, size, 204)


async def patch_upload(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["upload_id"]
    chunk = content_range(request)
    length = content_length(request)
    start = None
    if chunk is not None:
        start = chunk[0]
        span = chunk[1] - chunk[0] + 1
        if length is not None and length != span:
            raise OCIError(
                Code.SIZE_INVALID,
                "Content-Length does not match Content-Range",
                {"Content-Length": length, "range": span},
            )
        length = span
    size = await registry(request).append_upload(name, upload_id, body(request), start=start, length=length)
    return _session(name, upload_id, size, 202)


async def finish_upload(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["upload_id"]
    digest = request.query_params.get("digest")
    if not digest:
        raise OCIError(Code.DIGEST_INVALID, "the digest query parameter is required to complete an upload")
    reg = registry(request)
    chunk = content_range(request)
    if chunk is not None:
        # A final chunk with its range: appended as a PATCH would, then committed.
        info = await reg.commit_upload(
            name, upload_id, digest, body(request), start=chunk[0], length=chunk[1] - chunk[0] + 1
        )
    elif has_body(request):
        info = await reg.commit_upload(name, upload_id, digest, body(request), content_length(request))
    else:
        info = await reg.commit_upload(name, upload_id, digest)
    await notify.blob(request, "push", name, info)
    return _created(name, info)


async def cancel_upload(request: Request) -> Response:
    await registry(request).cancel_upload(request.path_params["name"], request.path_params["upload_id"])
    return Response(status_code=204)
