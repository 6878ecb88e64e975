from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.auth.principal import CREATE_ONLY
from app.errors import Code, OCIError
from app.http import etag, not_modified, registry
from app.notify import hooks as notify
from storage import MAX_MANIFEST_SIZE as MAX_SIZE


async def get_manifest(request: Request) -> Response:
    # Served as stored, whatever Accept says: every client we know sends a full Accept list, and
    # answering 404 to an old one (registry:2's behaviour for OCI types) helps nobody.
    name, reference = request.path_params["name"], request.path_params["reference"]
    manifest = await registry(request).get_manifest(name, reference)
    digest = str(manifest.digest)
    headers = {"Docker-Content-Digest": digest, "ETag": etag(digest)}
    if not_modified(request, digest):
        # registry:2's 304 comes before it reads the manifest, so without a pull event
        return Response(status_code=304, headers=headers)
    await notify.manifest(request, "pull", name, reference, manifest)
    return Response(manifest.body, headers=headers, media_type=manifest.media_type)


async def put_manifest(request: Request) -> Response:
    name, reference = request.path_params["name"], request.path_params["reference"]
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_SIZE:
            raise OCIError(Code.SIZE_INVALID, "manifest too large", {"max": MAX_SIZE}, status=413)
    content_type = request.headers.get("content-type")
    create_only = bool(request.scope.get(CREATE_ONLY))
    manifest = await registry(request).put_manifest(name, reference, bytes(data), content_type, create_only=create_only)
    await notify.manifest(request, "push", name, reference, manifest)
    digest = str(manifest.digest)
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest, "Content-Length": "0"}
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject)
    return Response(status_code=201, headers=headers)


async def delete_manifest(request: Request) -> Response:
    name, reference = request.path_params["name"], request.path_params["reference"]
    removed = await registry(request).delete_manifest(name, reference)
    await notify.deleted(request, name, reference, removed)
    return Response(status_code=202, headers={"Content-Length": "0"})
