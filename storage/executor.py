"""The one way storage runs blocking filesystem work off the event loop.

``aiofiles.os.wrap`` does the executor hop; this adds the argument types it drops. Callers batch
their work into one sync function per hop (a commit is one hop, not one per syscall).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import aiofiles.os

P = ParamSpec("P")
T = TypeVar("T")


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    result: T = await aiofiles.os.wrap(fn)(*args, **kwargs)
    return result
