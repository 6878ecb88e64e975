"""The pages that change something: log in and out, restore a tag, delete a tag or a manifest.

Each change is a POST carrying the session's CSRF token (``Visit.form``); each delete is confirmed on
a page of its own first, which says exactly what goes and what stays.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from app.notify import hooks as notify
from app.ui.render import natural
from app.ui.viewer import TooManyFailures
from app.ui.visit import Refused, Visit
from storage import browse


def _safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would lend the login page to phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _repository_url(name: str) -> str:
    return f"/r/{name}"


async def login_form(visit: Visit) -> Any:
    if not visit.viewer.can_log_in:
        raise Refused(404, "this registry has no accounts to log in with here")
    return visit.page("login.html", next=_safe_next(visit.request.query_params.get("next")), failed=False)


async def login(visit: Visit) -> Any:
    fields = await visit.form()
    target = _safe_next(fields.get("next"))
    user, password = fields.get("username", ""), fields.get("password", "")
    client = visit.request.client.host if visit.request.client else ""
    try:
        accepted = bool(user) and await visit.site.gate.log_in(user, password, client)
    except TooManyFailures as held:
        raise Refused(429, "too many failed logins; try again later", {"Retry-After": str(held.retry_after)}) from None
    if not accepted:
        return visit.page("login.html", 401, next=target, failed=True)
    visit.logged_in(user)
    return visit.redirect(target)


async def logout(visit: Visit) -> Any:
    await visit.form()
    visit.logged_in(None)
    return visit.redirect("/")


def _may_delete(visit: Visit, name: str) -> None:
    visit.need("delete", name)
    visit.registry.deletable()  # the API's error and configuration hint when not


async def restore(visit: Visit) -> Any:
    name, tag = visit.request.path_params["name"], visit.request.path_params["tag"]
    visit.need("push", name)
    digest = (await visit.form()).get("digest", "")
    await browse.restore(visit.registry, name, tag, digest)
    await notify.manifest(visit.request, "push", name, tag, await visit.registry.get_manifest(name, digest))
    return visit.redirect(f"/r/{name}/-/tags/{tag}/history?restored={quote(digest)}")


async def delete_tag(visit: Visit) -> Any:
    name, tag = visit.request.path_params["name"], visit.request.path_params["tag"]
    _may_delete(visit, name)
    target = await visit.registry.get_manifest(name, tag)
    if visit.request.method == "GET":
        others = [
            t for t in await browse.pointing_at(visit.registry, name, str(target.digest), visit.site.tags) if t != tag
        ]
        return visit.page(
            "confirm.html", name=name, what="tag", tag=tag, digest=str(target.digest), stay=sorted(others, key=natural)
        )
    await visit.form()
    await visit.registry.delete_manifest(name, tag)  # by tag: the tag only (storage.manifests.delete)
    await notify.deleted(visit.request, name, tag)
    return visit.redirect(f"{_repository_url(name)}?deleted={quote(tag)}")


async def delete_manifest(visit: Visit) -> Any:
    name, digest = visit.request.path_params["name"], visit.request.path_params["digest"]
    _may_delete(visit, name)
    target = await visit.registry.get_manifest(name, digest)
    tagged = sorted(await browse.pointing_at(visit.registry, name, str(target.digest), visit.site.tags), key=natural)
    if visit.request.method == "GET":
        return visit.page("confirm.html", name=name, what="manifest", tag=None, digest=str(target.digest), stay=tagged)
    await visit.form()
    removed = await visit.registry.delete_manifest(name, str(target.digest))
    visit.site.sizes.forget(name)
    await notify.deleted(visit.request, name, str(target.digest), removed)
    return visit.redirect(f"{_repository_url(name)}?deleted={quote(str(target.digest))}")
