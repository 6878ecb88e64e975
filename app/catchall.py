"""The last error handler: an exception a route lets escape becomes a 500 (or 507) like any other error.

Starlette runs an ``Exception`` handler in its ServerErrorMiddleware, outside every other middleware:
its responses missed the headers ``CommonHeaders`` adds, and it re-raises after answering, so uvicorn
logged a second traceback (even for a full disk, which is no bug) and dropped the connection without
saying so. This middleware sits inside ``CommonHeaders``, answers, and does not re-raise.

A client that hangs up before its request body ends is no server error either: one line, no answer.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import unexpected_error

_CLOSE = (b"connection", b"close")

log = logging.getLogger("kura")


def close_after_error(start: Message) -> None:
    """After a server error the connection's state is not to be trusted (a request body may be half
    read): a response start with a 5xx status closes it, and tells the client so."""
    if start["status"] >= 500:
        start["headers"] = [*start.get("headers", []), _CLOSE]


class CatchAll:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                close_after_error(message)
            await send(message)

        try:
            await self.app(scope, receive, send_closing)
        except Exception as exc:
            if started:
                raise  # too late to answer: the server logs it once and drops the connection
            await unexpected_error(Request(scope), exc)(scope, receive, send_closing)
