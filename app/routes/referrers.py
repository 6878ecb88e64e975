from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.http import registry
from storage import mediatypes


async def list_referrers(request: Request) -> Response:
    artifact_type = request.query_params.get("artifactType") or None
    manifests = await registry(request).list_referrers(
        request.path_params["name"], request.path_params["digest"], artifact_type
    )
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
    return JSONResponse(body, headers=headers, media_type=mediatypes.OCI_INDEX)
