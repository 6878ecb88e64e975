"""The ``auth:`` section as registry:2 reads it, and Kura's own ``kura.auth`` (policies, token server).

registry:2 ignores a top-level ``kura:`` key, so one ``config.yml`` can serve both registries.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["pull", "push", "create", "delete"]
# registry:2's default list (registry/auth/token/token.go); "none" is never accepted.
SIGNING_ALGORITHMS = (
    "EdDSA", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
    "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
)  # fmt: skip


class _Strict(BaseModel):
    # A misspelt security key must not be ignored silently.
    model_config = ConfigDict(extra="forbid")


class HtpasswdAuth(_Strict):
    realm: str
    path: str


class TokenAuth(_Strict):
    realm: str = ""
    service: str
    issuer: str
    rootcertbundle: str | None = None
    jwks: str | None = None
    autoredirect: bool = False
    autoredirectpath: str = "/auth/token"
    signingalgorithms: list[str] | None = None

    @model_validator(mode="after")
    def _known_algorithms(self) -> TokenAuth:
        for alg in self.signingalgorithms or ():
            if alg not in SIGNING_ALGORITHMS:
                raise ValueError(f"auth.token.signingalgorithms: unsupported signing algorithm {alg!r}")
        if not self.realm and not self.autoredirect:
            raise ValueError("auth.token.realm must be set (or autoredirect: true)")
        return self


class Auth(_Strict):
    htpasswd: HtpasswdAuth | None = None
    token: TokenAuth | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Auth:
        if self.htpasswd is not None and self.token is not None:
            raise ValueError("auth: configure either htpasswd or token, not both")
        return self

    @property
    def enabled(self) -> bool:
        return self.htpasswd is not None or self.token is not None


class Grant(_Strict):
    users: list[str] = []
    groups: list[str] = []
    actions: list[Action]


class Rule(_Strict):
    """Who may do what on the repositories a glob matches (zot's ``accessControl`` model)."""

    policies: list[Grant] = []
    default: list[Action] = []  # any authenticated user
    anonymous: list[Action] = []  # requests without credentials


class TokenServer(_Strict):
    enabled: bool = False
    path: str = "/auth/token"  # the realm's path on this server
    htpasswd: str | None = None  # the accounts: an htpasswd file, as auth.htpasswd.path
    expiration: int = Field(300, ge=60)  # seconds; the spec says never less than 60
    refreshexpiration: int = Field(30 * 24 * 3600, ge=60)  # lifetime of docker login's identity token

    @model_validator(mode="after")
    def _accounts(self) -> TokenServer:
        if self.enabled and not self.htpasswd:
            raise ValueError("kura.auth.tokenserver.htpasswd must name the accounts' htpasswd file")
        return self


class RateLimit(_Strict):
    failures: int = Field(10, ge=1)  # failed authentications from one address ...
    window: int = Field(60, ge=1)  # ... within this many seconds, then 429 until the oldest expires


class KuraAuth(_Strict):
    admins: list[str] = []
    groups: dict[str, list[str]] = {}
    repositories: dict[str, Rule] = {}
    tokenserver: TokenServer = TokenServer()
    ratelimit: RateLimit = RateLimit()
    cachettl: int = Field(60, ge=0)  # seconds a verified password is remembered (bcrypt costs ~0.1 s)

    @property
    def policies_enabled(self) -> bool:
        """Without policies every authenticated user may do everything, as under registry:2."""
        return bool(self.repositories or self.admins)
