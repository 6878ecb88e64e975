"""The whole route table in one list (cf. distribution's ``api/v2/routes.go``).

Repository names contain ``/``, so they are matched with ``{name:path}`` and validated by storage.
Upload routes come first: ``blobs/uploads/`` must not be read as a blob digest.
"""

from __future__ import annotations

from starlette.routing import Route

from app.routes import base, blobs, kura, listing, manifests, referrers, uploads

ROUTES = [
    Route("/v2/", base.version_check, methods=["GET"]),
    Route("/v2/_catalog", listing.catalog, methods=["GET"]),
    Route("/v2/{name:path}/tags/list", listing.list_tags, methods=["GET"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.get_manifest, methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.put_manifest, methods=["PUT"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.delete_manifest, methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route("/v2/{name:path}/blobs/uploads/{upload_id}", uploads.upload_status, methods=["GET"]),
    Route("/v2/{name:path}/blobs/uploads/{upload_id}", uploads.patch_upload, methods=["PATCH"]),
    Route("/v2/{name:path}/blobs/uploads/{upload_id}", uploads.finish_upload, methods=["PUT"]),
    Route("/v2/{name:path}/blobs/uploads/{upload_id}", uploads.cancel_upload, methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/{digest}", blobs.get_blob, methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/blobs/{digest}", blobs.delete_blob, methods=["DELETE"]),
    Route("/v2/{name:path}/referrers/{digest}", referrers.list_referrers, methods=["GET"]),
    Route("/_kura/v1/live", kura.live, methods=["GET", "HEAD"]),
    Route("/_kura/v1/inspect/{name:path}/manifests/{reference}", kura.inspect, methods=["GET"]),
]
