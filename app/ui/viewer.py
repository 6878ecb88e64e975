"""Who is looking, and what they may do: the settings' own accounts and access policies.

With ``auth.htpasswd`` the UI logs users in against the same file; with ``auth.token`` and Kura's
token server, against the token server's accounts. With an outside token issuer Kura holds no
passwords: the UI offers no login and shows what the policies grant anonymous users. Without auth,
everyone may do everything, as on the v2 API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.auth.accounts import Accounts, shared_accounts
from app.auth.policy import ALL
from app.auth.ratelimit import Throttled
from app.config import Settings


@dataclass(frozen=True, slots=True)
class Viewer:
    user: str | None
    can_log_in: bool  # the registry has accounts the UI can check
    actions: Callable[[str], frozenset[str]]
    everything: bool  # sees every repository, so registry-wide totals tell them nothing new

    def may(self, action: str, repository: str) -> bool:
        return action in self.actions(repository)

    def sees(self, repository: str) -> bool:
        return self.may("pull", repository)


class TooManyFailures(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class Gate:
    def __init__(self, settings: Settings, shared: Accounts | None = None) -> None:
        """``shared``: the API auth's accounts (one failed-login budget for both); built here without."""
        self.enabled = settings.auth.enabled
        shared = shared or shared_accounts(settings)
        self.policies = shared.policies
        self.limiter = shared.limiter
        self.users = shared.users

    def viewer(self, user: str | None) -> Viewer:
        if not self.enabled:
            return Viewer(None, False, lambda repository: ALL, True)
        if self.users is None:
            user = None  # an outside token issuer: nobody can log in here
        policies = self.policies
        everything = policies.reads_everything(user)
        return Viewer(user, self.users is not None, lambda repository: policies.actions(user, repository), everything)

    async def log_in(self, user: str, password: str, client: str) -> bool:
        """Whether the password is right; raises TooManyFailures while the client is held back."""
        if self.users is None:
            return False
        retry = self.limiter.retry_after(client)
        if retry is not None:
            raise TooManyFailures(retry)
        try:
            if await self.users.verify(user, password, lambda: self.limiter.checking(client)):
                return True
        except Throttled as throttled:
            raise TooManyFailures(throttled.retry_after) from None
        self.limiter.failed(client)
        return False
