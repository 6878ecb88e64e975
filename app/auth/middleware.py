"""The authorization layer: every request is checked here before it reaches a route.

Installed only when ``auth`` is configured, so an open registry pays nothing. Under htpasswd a
request that authenticated but lacks the right gets 403 ``DENIED``; under tokens it gets registry:2's
401 with ``error="insufficient_scope"``, which makes clients fetch a token for the new scope.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.auth import challenge
from app.auth.access import AccessMap, Kind, Need, need_of
from app.auth.htpasswd import Htpasswd, parse_basic
from app.auth.policy import Policies
from app.auth.principal import CREATE_ONLY, PRINCIPAL, Principal
from app.auth.ratelimit import FailureLimiter, Throttled
from app.auth.settings import TokenAuth
from app.auth.tokens import Claims, InvalidToken, TokenVerifier
from app.auth.tokenserver import TokenEndpoint
from app.observe import QUERY_KEY, USER_KEY
from app.routes.uploads import mount_of
from storage import MAX_MANIFEST_SIZE as MAX_SIZE
from storage import Registry, tags
from storage.errors import StorageError

log = logging.getLogger("kura.auth")


def _sees(policies: Policies, user: str | None) -> Callable[[str], bool] | None:
    if not policies.enabled or user in policies.admins:
        return None
    return lambda repository: "pull" in policies.actions(user, repository)


# Around a password check: the failure limiter's (FailureLimiter.checking), which may throttle it
Checking = Callable[[], AbstractContextManager[object]]


class Rejected(Exception):
    """Credentials were sent and are wrong (or malformed): 401.

    A wrong password counts against the client's address; a bad token does not, since nobody can
    guess a signature, and clients legitimately present tokens that have just expired.
    """

    def __init__(self, guess: bool) -> None:
        super().__init__()
        self.guess = guess


class Basic:
    """``auth.htpasswd``: the realm's challenge, and the policies for who authenticated."""

    def __init__(self, realm: str, users: Htpasswd, policies: Policies) -> None:
        self.header = challenge.basic(realm)
        self.users = users
        self.policies = policies
        # Principals depend on the user and the (fixed) policies only: built once per user.
        self.principal = functools.lru_cache(maxsize=1024)(self._principal)

    def _principal(self, user: str | None) -> Principal:
        return Principal(
            user,
            user is not None,
            lambda repository: self.policies.actions(user, repository),
            user is not None,
            self.policies.reads_everything(user),
            _sees(self.policies, user),
        )

    async def authenticate(self, authorization: str | None, checking: Checking = nullcontext) -> Principal | None:
        """None without credentials (the anonymous rights apply); raises Rejected for bad ones, and
        Throttled (from ``checking``, around a password check) for too many at once."""
        if authorization is None:
            return None
        credentials = parse_basic(authorization)
        if credentials == ("", ""):
            return None  # containers/image answers a Basic challenge with empty credentials when it has none
        if credentials is None or not await self.users.verify(*credentials, checking):
            raise Rejected(guess=credentials is not None)
        return self.principal(credentials[0])

    def known(self, authorization: str | None) -> Principal | None:
        """The principal when it is known without a password check (anonymous, or a remembered password);
        None when only ``authenticate`` can tell."""
        if authorization is None:
            return self.principal(None)
        credentials = parse_basic(authorization)
        if credentials == ("", ""):
            return self.principal(None)
        if credentials is None or not self.users.remembered(*credentials):
            return None
        return self.principal(credentials[0])


class Bearer:
    """``auth.token``: tokens from the configured issuer (possibly Kura's own token server)."""

    def __init__(
        self, config: TokenAuth, verifier: TokenVerifier, policies: Policies, accounts: Basic | None = None
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.policies = policies
        # With the built-in token server Kura owns the accounts, so Basic credentials sent straight
        # to the registry (curl -u, oras' basic backend) are honoured too: registry:2 would refuse them.
        self.accounts = accounts

    def realm(self, scope: Scope) -> str:
        if not self.config.autoredirect:
            return self.config.realm
        # registry:2's buildAutoRedirectURL: https unless a proxy says otherwise, host from the request.
        headers = Headers(scope=scope)
        proto = headers.get("x-forwarded-proto") or "https"
        return f"{proto}://{headers.get('host', '')}{self.config.autoredirectpath}"

    async def authenticate(self, authorization: str | None, checking: Checking = nullcontext) -> Principal | None:
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "basic" and self.accounts is not None:
            return await self.accounts.authenticate(authorization, checking)
        if scheme.lower() != "bearer" or not token:
            return None  # registry:2: "authorization token required", no error parameter
        try:
            claims = self.verifier.verify(token.strip())
        except InvalidToken as exc:
            log.info("bearer token refused: %s", exc)
            raise Rejected(guess=False) from None
        return self._principal(claims)

    def known(self, authorization: str | None) -> Principal | None:
        """The principal of a token verified before (or of a remembered Basic password); None when only
        ``authenticate`` can tell, which also logs and refuses what is wrong."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "basic" and self.accounts is not None:
            principal = self.accounts.known(authorization)
            return principal if principal is not None and principal.name is not None else None
        if scheme.lower() != "bearer" or not token:
            return None
        claims = self.verifier.remembered(token.strip())  # a new token is verified (once) by authenticate
        return None if claims is None else self._principal(claims)

    def _principal(self, claims: Claims) -> Principal:
        name = claims.subject or None

        def actions(repository: str) -> frozenset[str]:
            held = claims.actions("repository", repository)
            return frozenset({"pull", "push", "create", "delete"}) if "*" in held else held

        catalog = "*" in claims.actions("registry", "catalog")
        # Without policies Kura cannot know what else a token's holder may read: no mount without from.
        everything = self.policies.enabled and name in self.policies.admins
        return Principal(name, True, actions, catalog, everything, _sees(self.policies, name), bearer=True)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header, as ``Headers(scope=scope).get`` gives it, without building one."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _allows(held: frozenset[str], kind: Kind) -> bool:
    if kind is Kind.PUSH:
        return bool({"push", "create"} & held)
    return kind.value in held


def permitted(principal: Principal, need: Need) -> bool:
    if need.kind is Kind.IDENTITY:
        return principal.authenticated
    if need.kind is Kind.CATALOG:
        return principal.catalog
    return _allows(principal.actions(need.repository or ""), need.kind)


def _tags_under_create_only(need: Need, principal: Principal) -> bool:
    """A manifest PUT by tag from someone who may create but not push: moving a tag must be refused."""
    if need.kind is not Kind.PUSH or need.reference is None or ":" in need.reference:
        return False
    return "push" not in principal.actions(need.repository or "")


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        routes: AccessMap,
        scheme: Basic | Bearer,
        limiter: FailureLimiter,
        token_endpoint: TokenEndpoint | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.scheme = scheme
        self.limiter = limiter
        self.token_endpoint = token_endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token_endpoint is not None and scope["path"] == self.token_endpoint.path:
            await self.token_endpoint(scope, receive, send)
            return
        need = self.routes.need(scope["method"], scope["path"])
        if need.kind is Kind.OPEN:
            await self.app(scope, receive, send)
            return
        # Read as the route reads it (Starlette's parsing: %-decoded keys, blank values kept, the last
        # of a repeated key): a mount decided on other bytes than the route's would pass unchecked.
        asked = mount_of(QueryParams(scope["query_string"])) if need.kind is Kind.PUSH else None
        source = asked[1] if asked is not None else None
        authorization = _header(scope, b"authorization")
        client = scope["client"][0] if scope.get("client") else ""

        principal: Principal | None = None
        refusal: Response | None = None
        if authorization is not None and (retry := self.limiter.retry_after(client)) is not None:
            refusal = challenge.too_many(retry)
        else:
            try:
                principal = await self.scheme.authenticate(authorization, lambda: self.limiter.checking(client))
            except Throttled as throttled:
                refusal = challenge.too_many(throttled.retry_after)
            except Rejected as rejected:
                if rejected.guess:
                    self.limiter.failed(client)
                metrics.count_auth_failure("bad_password" if rejected.guess else "bad_token")
                log.info("authentication failed from %s", client)
                refusal = self._challenge(scope, need, source, "invalid_token")
            else:
                if principal is None and isinstance(self.scheme, Basic):
                    principal = self.scheme.principal(None)  # what anonymous users may do
                refusal = self._refusal(scope, need, source, principal)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert principal is not None
        if principal.name is not None:
            scope[USER_KEY] = principal.name  # in place: the access log outside reads the same scope

        # In place, so that what the router adds (the repository name) reaches the access log outside.
        scope[PRINCIPAL] = principal
        if asked is not None and not self._may_mount(principal, source):
            # registry:2 answers a mount it cannot do with a plain upload session; so do we, and
            # a blob the user cannot read is never revealed. The access log still shows what was sent.
            scope[QUERY_KEY] = scope["query_string"]
            kept = [(k, v) for k, v in QueryParams(scope["query_string"]).multi_items() if k not in ("mount", "from")]
            scope["query_string"] = urlencode(kept).encode("latin-1")
        if _tags_under_create_only(need, principal):
            receive, refusal = await self._guard_tag(scope, need, receive, challenge.records(need, source))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            scope[CREATE_ONLY] = True  # the look above raced other pushes: the tag write decides
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, need: Need, source: str | None, principal: Principal | None) -> Response | None:
        """None when the request may go on; else 401 (no or insufficient token, anonymous) or 403."""
        if principal is None:
            return self._challenge(scope, need, source, None)  # bearer: "authorization token required"
        if permitted(principal, need):
            return None
        if principal.bearer:
            return self._challenge(scope, need, source, "insufficient_scope")
        if principal.name is None:
            return self._challenge(scope, need, source, None)
        return challenge.denied(challenge.records(need, source))

    def _challenge(self, scope: Scope, need: Need, source: str | None, error: str | None) -> Response:
        found = challenge.records(need, source)
        if isinstance(self.scheme, Basic):
            return challenge.unauthorized(self.scheme.header, found)
        header = challenge.bearer(self.scheme.realm(scope), self.scheme.config.service, found, error)
        return challenge.unauthorized(header, found)

    def _may_mount(self, principal: Principal, source: str | None) -> bool:
        if source is None:
            return principal.reads_everything
        return "pull" in principal.actions(source)

    async def _guard_tag(
        self, scope: Scope, need: Need, receive: Receive, found: list[tuple[str, str, str]]
    ) -> tuple[Receive, Response | None]:
        """With ``create`` only, a tag may be pushed if it is new or already names this very manifest."""
        assert need.repository is not None and need.reference is not None
        registry: Registry = scope["app"].state.registry  # made by the app's lifespan
        try:
            current = await registry.get_manifest(need.repository, need.reference)
        except StorageError:
            return receive, None  # no such tag (or repository): creating it is allowed
        body, replay = await _buffered(receive)
        if body is None or "sha256:" + hashlib.sha256(body).hexdigest() != str(current.digest):
            return replay, challenge.denied(found, tags.moving_refused(need.reference))
        return replay, None


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None past the manifest size limit), and a receive that replays it."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > MAX_SIZE or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return (body if size <= MAX_SIZE else None), replay


class ReadGate:
    """The check of ``AuthMiddleware`` for the hot reads (``app.hotroutes``), decided without side effects.

    ``admits`` says yes only when the middleware would let the request through unchanged: a pull by
    someone known without a password check (anonymous rights, a password verified before, a valid token),
    not held back by the failure limiter. Every other request goes through the middleware itself, which
    counts failures, logs and answers the challenge, so nothing is counted or logged twice.
    """

    def __init__(self, scheme: Basic | Bearer, limiter: FailureLimiter, token_endpoint: TokenEndpoint | None) -> None:
        self.scheme = scheme
        self.limiter = limiter
        self.token_path = token_endpoint.path if token_endpoint is not None else None

    def admits(self, scope: Scope, endpoint: Callable[..., Any], params: dict[str, str]) -> bool:
        """For a request the lane matched to ``endpoint`` (a hot route, as ``AccessMap.need`` does first)."""
        if scope["path"] == self.token_path:
            return False
        need = need_of(endpoint, params)
        if need.kind is Kind.OPEN:
            return True
        if need.kind is not Kind.PULL:
            return False
        authorization = _header(scope, b"authorization")
        client = scope["client"][0] if scope.get("client") else ""
        if authorization is not None and self.limiter.retry_after(client) is not None:
            return False
        principal = self.scheme.known(authorization)
        if principal is None or not permitted(principal, need):
            return False
        if principal.name is not None:
            scope[USER_KEY] = principal.name  # as the middleware does: the access log reads it
        scope[PRINCIPAL] = principal
        return True
