"""Builds the authorization layer from the settings (called by ``create_app`` only when auth is on)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from app.auth.access import AccessMap
from app.auth.accounts import Accounts, shared_accounts
from app.auth.middleware import Basic, Bearer
from app.auth.settings import SIGNING_ALGORITHMS
from app.auth.signer import Signer
from app.auth.tokens import TokenVerifier, load_bundle, load_jwks
from app.auth.tokenserver import TokenEndpoint
from app.config import ConfigError, Settings


def middleware_options(
    settings: Settings, routes: Sequence[BaseRoute], shared: Accounts | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``AuthMiddleware`` for these settings, with the UI's ``shared`` accounts."""
    kura = settings.kura.auth
    if settings.auth.htpasswd is not None and kura.tokenserver.enabled:
        raise ConfigError("kura.auth.tokenserver issues tokens: it needs auth.token, not auth.htpasswd")
    shared = shared or shared_accounts(settings)
    policies, limiter = shared.policies, shared.limiter
    options: dict[str, Any] = {"routes": AccessMap(routes), "limiter": limiter}
    if settings.auth.htpasswd is not None:
        assert shared.users is not None
        options["scheme"] = Basic(settings.auth.htpasswd.realm, shared.users, policies)
        return options
    token = settings.auth.token
    assert token is not None
    roots = []
    endpoint = None
    accounts = None
    if kura.tokenserver.enabled:
        users = shared.users
        assert users is not None  # the settings checked that the token server has an htpasswd file
        signer = Signer(settings.root)
        roots.append(signer.certificate)
        endpoint = TokenEndpoint(kura.tokenserver, token, users, policies, signer, limiter)
        accounts = Basic(token.realm, users, policies)
    jwks = []
    try:
        if token.rootcertbundle:
            roots.extend(load_bundle(token.rootcertbundle))
        if token.jwks:
            jwks = load_jwks(token.jwks)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"auth.token: cannot load the signing keys: {exc}") from None
    if not roots and not jwks:
        raise ConfigError("auth.token needs rootcertbundle or jwks (or kura.auth.tokenserver.enabled)")
    algorithms = token.signingalgorithms or list(SIGNING_ALGORITHMS)
    verifier = TokenVerifier(token.issuer, token.service, roots, jwks, algorithms)
    options["scheme"] = Bearer(token, verifier, policies, accounts)
    options["token_endpoint"] = endpoint
    return options


def check(settings: Settings) -> None:
    """Load every file auth needs (and create the token key) once, before any worker starts, so a
    mistake is one clear error instead of workers dying at boot."""
    from app.routes import ROUTES

    middleware_options(settings, ROUTES)
