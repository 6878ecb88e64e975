"""The built-in token server (docker's token spec): the ``realm`` that ``auth.token`` points at.

``GET <path>?service=&scope=...&account=&offline_token=true`` with Basic credentials (or none, for
what anonymous users may do), and the OAuth2 ``POST`` form (``grant_type=password`` or
``refresh_token``) that containerd tries first and docker uses with the identity token that
``docker login`` stored. The grant is the intersection of what was asked and what the access
policies allow; asking for more is not an error.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from app.auth import challenge
from app.auth.htpasswd import Htpasswd, parse_basic
from app.auth.policy import Policies
from app.auth.ratelimit import FailureLimiter, Throttled
from app.auth.settings import TokenAuth, TokenServer
from app.auth.signer import ALGORITHM, Signer

log = logging.getLogger("kura.auth")
REFRESH_AUDIENCE = "kura-refresh"  # never the service: a refresh token is not an access token
_FORM_MAX = 64 * 1024


def parse_scope(text: str) -> tuple[str, str, list[str]] | None:
    """``type[(class)]:name:actions``; the name may hold a ``:port``, so split at the first and last."""
    kind, _, rest = text.partition(":")
    name, colon, actions = rest.rpartition(":")
    if not colon or not kind or not name:
        return None
    return kind.split("(", 1)[0], name, [a for a in actions.split(",") if a]


def grant(policies: Policies, user: str | None, scopes: Iterable[str]) -> list[dict[str, Any]]:
    access: dict[tuple[str, str], list[str]] = {}
    for text in scopes:
        parsed = parse_scope(text)
        if parsed is None:
            continue
        kind, name, requested = parsed
        if kind == "registry" and name == "catalog":
            if user is not None and "*" in requested:
                access[(kind, name)] = ["*"]
            continue
        if kind != "repository":
            continue
        allowed = policies.actions(user, name)
        given = access.setdefault((kind, name), [])
        for action in sorted(allowed) if "*" in requested else requested:
            # Who may only create gets "create" for "push": the registry then refuses to move a tag.
            if action == "push" and "push" not in allowed and "create" in allowed:
                action = "create"
            if action in allowed and action not in given:
                given.append(action)
    return [{"type": kind, "name": name, "actions": actions} for (kind, name), actions in access.items() if actions]


class TokenEndpoint:
    def __init__(
        self,
        config: TokenServer,
        token: TokenAuth,
        users: Htpasswd,
        policies: Policies,
        signer: Signer,
        limiter: FailureLimiter,
    ) -> None:
        self.path = config.path
        self.config = config
        self.token = token
        self.users = users
        self.policies = policies
        self.signer = signer
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method == "GET":
            response = await self._get(request)
        elif request.method == "POST":
            response = await self._post(request)
        else:
            response = Response(status_code=405, headers={"Allow": "GET, POST"})
        await response(scope, receive, send)

    def _client(self, request: Request) -> str:
        return request.client.host if request.client else ""

    async def _authenticate(self, request: Request, user: str, password: str) -> Response | None:
        """None when the password is right; else the answer (401, or 429 when guessing)."""
        client = self._client(request)
        retry = self.limiter.retry_after(client)
        if retry is not None:
            return challenge.too_many(retry)
        try:
            if await self.users.verify(user, password, lambda: self.limiter.checking(client)):
                return None
        except Throttled as throttled:
            return challenge.too_many(throttled.retry_after)
        self.limiter.failed(client)
        log.info("token server: failed authentication from %s", client)
        return challenge.unauthorized(challenge.basic(self.token.realm or self.path), [])

    def _bad_service(self, service: str | None) -> Response | None:
        if service and service != self.token.service:
            return _oauth_error(400, "invalid_request", f"this server issues tokens for {self.token.service!r} only")
        return None

    async def _get(self, request: Request) -> Response:
        query = request.query_params
        if (refused := self._bad_service(query.get("service"))) is not None:
            return refused
        user: str | None = None
        header = request.headers.get("authorization")
        credentials = parse_basic(header) if header else None
        if header and credentials != ("", ""):  # empty credentials: containers/image without any
            if credentials is None:
                return challenge.unauthorized(challenge.basic(self.token.realm or self.path), [])
            user, password = credentials
            if (refused := await self._authenticate(request, user, password)) is not None:
                return refused
        scopes = [s for value in query.getlist("scope") for s in value.split(" ") if s]
        offline = query.get("offline_token", "").lower() == "true" and user is not None
        return self._issue(user, scopes, offline)

    async def _post(self, request: Request) -> Response:
        fields = await _form(request)
        if fields is None:
            return _oauth_error(400, "invalid_request", "expected a form (application/x-www-form-urlencoded)")
        if (refused := self._bad_service(fields.get("service"))) is not None:
            return refused
        if not fields.get("client_id"):
            return _oauth_error(400, "invalid_request", "client_id is required")
        grant_type = fields.get("grant_type")
        if grant_type == "password":
            user = fields.get("username", "")
            refused = await self._authenticate(request, user, fields.get("password", ""))
            if refused is not None:
                return refused
        elif grant_type == "refresh_token":
            found = self._refreshed_user(fields.get("refresh_token", ""))
            if found is None:  # not counted as a guess: nobody forges our signature
                return _oauth_error(401, "invalid_grant", "the refresh token is not valid")
            user = found
        else:
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be password or refresh_token")
        scopes = fields.get("scope", "").split()
        return self._issue(user, scopes, fields.get("access_type") == "offline")

    def _refreshed_user(self, token: str) -> str | None:
        """The user a refresh token of ours names, if the account still has the same password."""
        try:
            claims = jwt.decode(
                token,
                self.signer.public_key(),
                algorithms=[ALGORITHM],
                audience=REFRESH_AUDIENCE,
                issuer=self.token.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        user = claims["sub"]
        self.users.refresh()
        tag = self.users.entry_tag(user) if isinstance(user, str) else None
        if tag is None or not secrets.compare_digest(tag, str(claims.get("kura_entry", ""))):
            return None
        return str(user)

    def _issue(self, user: str | None, scopes: list[str], offline: bool) -> Response:
        now = int(time.time())
        access = grant(self.policies, user, scopes)
        claims = {
            "iss": self.token.issuer,
            "sub": user or "",
            "aud": self.token.service,
            "exp": now + self.config.expiration,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": access,
        }
        token = self.signer.sign(claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat().replace("+00:00", "Z")
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.config.expiration,
            "issued_at": issued,
        }
        if offline and user is not None:
            body["refresh_token"] = self.signer.sign(
                {
                    "iss": self.token.issuer,
                    "sub": user,
                    "aud": REFRESH_AUDIENCE,
                    "exp": now + self.config.refreshexpiration,
                    "iat": now,
                    "jti": secrets.token_urlsafe(16),
                    "kura_entry": self.users.entry_tag(user),
                }
            )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str] | None:
    """The OAuth2 form (urlencoded: no multipart parser needed), or None when it is not one."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_MAX:
            return None
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return None


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
