"""A streamed blob response that owns an already-open file descriptor."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.zerocopy import EXTENSION
from storage import FileReader


class BlobResponse(Response):
    def __init__(
        self,
        reader: FileReader,
        headers: Mapping[str, str],
        status_code: int = 200,
        span: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, headers=headers, media_type="application/octet-stream")
        self.reader = reader
        self.span = span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            start, end = self.span if self.span is not None else (0, self.reader.size - 1)
            if EXTENSION in scope.get("extensions", {}) and self.reader.fileno() is not None:
                message = {"type": EXTENSION, "file": self.reader, "offset": start, "count": end - start + 1}
                await send(message)
                return
            if end >= start:
                async for chunk in self.reader.chunks(start, end):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.reader.close()
