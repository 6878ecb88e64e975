"""The UI's routes, none under ``/v2/``, ``/_kura/``, ``/auth/`` or ``/metrics``.

Repository names contain ``/``; ``/-/`` separates a name from what follows, since no name component
can be ``-`` (``storage.names``). More specific routes come first: ``/r/{name:path}`` would match them all.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.ui import actions, pages
from app.ui.visit import view

_STATIC = {"kura.css": "text/css; charset=utf-8", "copy.js": "text/javascript; charset=utf-8"}
_FILES = {name: resources.files("app.ui").joinpath("static", name).read_bytes() for name in _STATIC}


async def static(request: Request) -> Response:
    name = request.path_params["file"]
    if name not in _FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(_FILES[name], media_type=_STATIC[name], headers={"Cache-Control": "max-age=3600"})


ROUTES = [
    Route("/", view(pages.repositories), methods=["GET"]),
    Route("/-/storage", view(pages.storage), methods=["GET"]),
    Route("/-/login", view(actions.login_form), methods=["GET"]),
    Route("/-/login", view(actions.login), methods=["POST"]),
    Route("/-/logout", view(actions.logout), methods=["POST"]),
    Route("/-/static/{file}", static, methods=["GET"]),
    Route("/r/{name:path}/-/manifests/{digest}/delete", view(actions.delete_manifest), methods=["GET", "POST"]),
    Route("/r/{name:path}/-/manifests/{reference}", view(pages.manifest), methods=["GET"]),
    Route("/r/{name:path}/-/tags/{tag}/history", view(pages.history), methods=["GET"]),
    Route("/r/{name:path}/-/tags/{tag}/restore", view(actions.restore), methods=["POST"]),
    Route("/r/{name:path}/-/tags/{tag}/delete", view(actions.delete_tag), methods=["GET", "POST"]),
    Route("/r/{name:path}", view(pages.repository), methods=["GET"]),
]
