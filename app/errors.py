"""The OCI error table and the one translation of storage errors into wire errors.

Statuses follow distribution's ``errcode`` registrations, which the OCI spec's tables agree with.
Handlers never catch: they raise ``StorageError`` (from storage) or ``OCIError`` (from HTTP parsing)
and the handlers registered here answer with ``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from enum import Enum
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.logs import FIELDS
from storage import errors as se
from storage.driver import Busy

log = logging.getLogger("kura")
_READS = frozenset(("GET", "HEAD"))


class Code(Enum):
    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    TAG_INVALID = (400, "manifest tag did not match URI")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    UNAVAILABLE = (503, "service unavailable")
    RANGE_INVALID = (416, "invalid content range")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    UNKNOWN = (500, "unknown error")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class OCIError(Exception):
    """An error the HTTP layer detects itself (a bad header, a bad query parameter)."""

    def __init__(
        self,
        code: Code,
        message: str | None = None,
        detail: object = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = dict(headers or {})


# (code, status override) for each storage error; looked up along the MRO.
FROM_STORAGE: Final[Mapping[type[se.StorageError], tuple[Code, int | None]]] = {
    se.NameInvalid: (Code.NAME_INVALID, None),
    se.NameUnknown: (Code.NAME_UNKNOWN, None),
    se.TagInvalid: (Code.TAG_INVALID, None),
    se.DigestInvalid: (Code.DIGEST_INVALID, None),
    se.TagExists: (Code.DENIED, 403),
    se.Unsupported: (Code.UNSUPPORTED, None),
    se.ReadOnly: (Code.UNSUPPORTED, None),
    se.BlobUnknown: (Code.BLOB_UNKNOWN, None),
    se.SizeInvalid: (Code.SIZE_INVALID, None),
    se.UploadUnknown: (Code.BLOB_UPLOAD_UNKNOWN, None),
    se.UploadInvalid: (Code.BLOB_UPLOAD_INVALID, None),
    se.RangeInvalid: (Code.RANGE_INVALID, None),
    se.ManifestUnknown: (Code.MANIFEST_UNKNOWN, None),
    se.ManifestInvalid: (Code.MANIFEST_INVALID, None),
    se.ManifestBlobUnknown: (Code.MANIFEST_BLOB_UNKNOWN, None),
    se.ManifestTooLarge: (Code.SIZE_INVALID, 413),
}


def log_rejection(request: Request, code: Code, message: str, detail: object) -> None:
    """One line with the reason for every refused write: containerd and BuildKit drop the error body,
    so the log is where a user finds out why a push failed. Refused reads (a HEAD before each layer
    push is a 404 by design) are only in the access log."""
    if request.method in _READS:
        return
    name = request.path_params.get("name")
    fields: dict[str, object] = {"err.code": code.name, "err.message": message, "vars.name": name}
    if detail is not None:
        fields["err.detail"] = detail
    log.warning(
        "%s %s rejected: %s: %s", request.method, request.url.path[:300], code.name, message, extra={FIELDS: fields}
    )


# Refusals that come from the configuration say which key changes them
CONFIG_HINTS: Final[Mapping[type[se.StorageError], str]] = {
    se.DeleteDisabled: "set storage.delete.enabled: true (or REGISTRY_STORAGE_DELETE_ENABLED=true) to allow them",
    se.ReadOnly: "storage.maintenance.readonly.enabled is true",
}


def error_response(
    code: Code, message: str, detail: object, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"errors": [{"code": code.name, "message": message, "detail": detail if detail is not None else {}}]}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def storage_answer(exc: se.StorageError) -> tuple[Code, int, str, bool]:
    """The code, status and message the API answers a storage error with, and whether it has a code
    of its own (else UNKNOWN); the UI's pages say the same."""
    found = next((FROM_STORAGE[c] for c in type(exc).__mro__ if c in FROM_STORAGE), None)
    code, status = found or (Code.UNKNOWN, None)
    message = exc.message or code.message
    hint = next((CONFIG_HINTS[c] for c in type(exc).__mro__ if c in CONFIG_HINTS), None)
    if hint is not None:
        message = f"{message}: {hint}"
    return code, status or code.status, message, found is not None


def storage_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, se.StorageError)
    code, status, message, _ = storage_answer(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, se.RangeInvalid):
        # Tell the client where the upload really ends so it can resume from there.
        headers["Range"] = f"0-{max(exc.size - 1, 0)}"
        headers["Content-Range"] = f"bytes */{exc.size}"
    log_rejection(request, code, message, exc.detail)
    return error_response(code, message, exc.detail, status, headers)


def oci_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OCIError)
    log_rejection(request, exc.code, exc.message, exc.detail)
    return error_response(exc.code, exc.message, exc.detail, exc.status, exc.headers)


BUSY_RETRY_AFTER = "1"  # seconds: a garbage collection's sweep holds a stripe for milliseconds at a time


def busy_error(request: Request, exc: Exception) -> Response:
    """A lock stayed held longer than the request waits for it (``storage.driver.Busy``): a garbage
    collection sweeping this blob's stripe, or another change of the same tags. The client may send
    the same request again (an upload commit puts back what it appended; a manifest PUT may have
    stored its manifest, and its retry tags it): 503 with Retry-After."""
    message = "the content is locked by another request or by garbage collection; retry shortly"
    log_rejection(request, Code.UNAVAILABLE, message, None)
    return error_response(Code.UNAVAILABLE, message, None, 503, {"Retry-After": BUSY_RETRY_AFTER})


def client_disconnect(request: Request, exc: Exception) -> Response:
    # The client went away mid-body: its doing, so no traceback; the reply is for nobody, and what
    # the request had written stays (an upload resumes from it).
    log.info("client hung up during %s %s", request.method, request.url.path[:300])
    return error_response(Code.BLOB_UPLOAD_INVALID, "client disconnected", None, 400)


def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(Code.UNSUPPORTED, "method not allowed on this endpoint", None, 405, exc.headers)
    if exc.status_code == 404:
        return error_response(Code.UNSUPPORTED, "no such endpoint", {"path": request.url.path[:300]}, 404)
    return error_response(Code.UNKNOWN, str(exc.detail), None, exc.status_code, exc.headers)


def unexpected_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # Not a bug: say so to the client (507, still a server error that it may retry later).
        log.error("storage full on %s %s: %s", request.method, request.url.path, exc.strerror)
        return error_response(Code.UNKNOWN, "the registry's storage is full", None, 507)
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    # The detail is deliberately empty: an exception text could leak filesystem paths.
    return error_response(Code.UNKNOWN, "internal error", None, 500)


# Any other exception is answered by app.catchall, inside the middleware that adds the common headers.
HANDLERS = {
    se.StorageError: storage_error,
    OCIError: oci_error,
    Busy: busy_error,
    ClientDisconnect: client_disconnect,
    HTTPException: http_error,
}
