"""One request to the UI: who is looking (session and viewer), the page it gets, and its errors.

Pages answer in HTML, errors included: a storage error becomes an error page with the status the v2
API would give (``app.errors.storage_answer``), never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.errors import storage_answer
from app.http import registry
from app.images.explain import printable
from app.ui import session
from app.ui.render import environment
from app.ui.site import Site
from app.ui.viewer import Viewer
from storage import Registry
from storage.errors import StorageError

log = logging.getLogger("kura.ui")

FORM_LIMIT = 64 * 1024  # the UI's forms hold a few short fields
HEADERS = {
    # No inline script or style anywhere, so the policy can forbid them: injected markup stays inert.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages carry CSRF tokens and what this user may see
}


class Refused(Exception):
    """A request the UI will not carry out: shown as an error page with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(slots=True)
class Visit:
    request: Request
    site: Site
    registry: Registry
    key: bytes
    session: session.Session
    viewer: Viewer

    @property
    def csrf(self) -> str:
        return self.session.csrf(self.key)

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        page = environment().get_template(template)
        html = page.render(
            viewer=self.viewer,
            csrf=self.csrf,
            path=self.request.url.path,
            query=self.request.url.query,
            host=self.request.headers.get("host", "localhost:5000"),
            delete_enabled=self.registry.options.delete_enabled and not self.registry.options.read_only,
            read_only=self.registry.options.read_only,
            **context,
        )
        # A stored string shown on the page may hold a lone surrogate, which UTF-8 cannot encode.
        return self.finish(HTMLResponse(printable(html), status_code=status, headers=HEADERS))

    def redirect(self, url: str) -> Response:
        return self.finish(RedirectResponse(url, status_code=303, headers=HEADERS))

    def finish(self, response: Response) -> Response:
        if self.session.fresh:
            response.set_cookie(
                session.COOKIE,
                self.session.cookie(self.key),
                max_age=session.LIFETIME,
                path="/",
                httponly=True,
                samesite="strict",
                secure=self.request.url.scheme == "https",
            )
        return response

    async def form(self) -> dict[str, str]:
        """The fields of a POSTed form, once its CSRF token and origin are checked."""
        body = b""
        async for chunk in self.request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                raise Refused(413, "the form is too large")
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise Refused(400, "the form is not UTF-8") from None
        origin = self.request.headers.get("origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != self.request.headers.get("host"):
            raise Refused(403, "the form was sent from another site")
        if self.session.fresh or not self.session.csrf_ok(self.key, fields.get("csrf", "")):
            raise Refused(403, "the form's security token is missing or stale: reload the page and try again")
        return fields

    def logged_in(self, user: str | None) -> None:
        """Start a new session (a new nonce: tokens from before the login stop working)."""
        self.session = session.Session.new(user)
        self.viewer = self.site.gate.viewer(user)

    def need(self, action: str, repository: str) -> None:
        if self.viewer.may(action, repository):
            return
        if action != "pull" and self.viewer.sees(repository):
            raise Refused(403, f"you may not {action} in {repository}")
        # A repository the viewer may not pull is not confirmed to exist.
        raise Refused(404, f"repository {repository} is not known, or you may not see it")


async def start(request: Request) -> Visit:
    site: Site = request.app.state.ui
    reg = registry(request)
    key = await site.key(reg)
    found = session.read(key, request.cookies.get(session.COOKIE))
    if found is None:
        found = session.Session.new(None)
    viewer = site.gate.viewer(found.user)
    if found.user is not None and viewer.user is None:
        found = session.Session.new(None)  # accounts went away (config changed): start anonymous
    return Visit(request, site, reg, key, found, viewer)


Handler = Callable[[Visit], Awaitable[Response]]


def view(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        visit = await start(request)
        try:
            return await handler(visit)
        except Refused as refused:
            response = visit.page("error.html", refused.status, message=refused.message)
            response.headers.update(refused.headers)
            return response
        except StorageError as exc:
            _, status, message, known = storage_answer(exc)
            if not known:
                raise
            return visit.page("error.html", status, message=message, detail=exc.detail)

    return endpoint
