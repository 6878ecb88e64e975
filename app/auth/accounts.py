"""What the API's auth and the UI's login share, built once per app: the access policies, the local
accounts and one failed-login budget per client (a password guessed through the UI counts against
the same budget as one guessed through the API)."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.htpasswd import Htpasswd
from app.auth.policy import Policies
from app.auth.ratelimit import FailureLimiter
from app.config import ConfigError, Settings


@dataclass(frozen=True, slots=True)
class Accounts:
    policies: Policies
    limiter: FailureLimiter
    users: Htpasswd | None  # auth.htpasswd's, or Kura's token server's; None with an outside token issuer


def users_of(path: str, ttl: int) -> Htpasswd:
    try:
        return Htpasswd(path, ttl)
    except OSError as exc:
        raise ConfigError(f"cannot read the htpasswd file {path}: {exc.strerror or exc}") from None


def shared_accounts(settings: Settings) -> Accounts:
    kura = settings.kura.auth
    path = None
    if settings.auth.htpasswd is not None:
        path = settings.auth.htpasswd.path
    elif settings.auth.token is not None and kura.tokenserver.enabled:
        path = kura.tokenserver.htpasswd
    users = users_of(path, kura.cachettl) if path is not None else None
    return Accounts(Policies(kura), FailureLimiter(kura.ratelimit.failures, kura.ratelimit.window), users)
