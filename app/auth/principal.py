"""Who a request comes from, as the authorization layer found it (handlers read it from the scope)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PRINCIPAL = "kura.principal"  # the ASGI scope key
# Set when the principal may create tags but not move them: the tag write itself refuses to move one
CREATE_ONLY = "kura.create_only"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, and what they hold: from the policies (Basic) or from a token's claims."""

    name: str | None  # None: anonymous
    authenticated: bool  # a Basic user, or any valid token (registry:2 lets an anonymous token ping /v2/)
    actions: Callable[[str], frozenset[str]]
    catalog: bool
    reads_everything: bool  # may mount a blob without naming the repository it comes from
    sees: Callable[[str], bool] | None  # which repositories the catalog lists (None: all)
    bearer: bool = False  # from a token: a missing right is insufficient_scope (401), not DENIED (403)
