"""The catalog a user sees: only the repositories they may pull, still paginated with ``n``/``last``."""

from __future__ import annotations

from collections.abc import Callable

from storage import Registry

_BATCH = 1000  # repositories read per step, at most


async def visible_page(
    registry: Registry, sees: Callable[[str], bool], limit: int, after: str | None
) -> tuple[list[str], bool]:
    """Up to ``limit`` visible repositories after ``after``, and whether more visible ones follow."""
    found: list[str] = []
    batch = min(limit + 1, _BATCH)  # enough when nothing is filtered out; grows while ``sees`` drops names
    while True:
        page, more = await registry.list_repositories(batch, after)
        batch = min(batch * 4, _BATCH)
        for repository in page:
            if sees(repository):
                if len(found) == limit:
                    return found, True
                found.append(repository)
        if not more or not page:
            return found, False
        after = page[-1]
