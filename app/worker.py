"""How ``kura serve`` runs uvicorn: in-process for one worker, or as ``python -m app.worker FD PARENT``.

A worker gets its settings from the environment (``SETTINGS_ENV``, set by ``kura serve``) and serves
its own listening socket, inherited from the supervisor (``app.supervisor``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import sys
import tempfile
from typing import Any

from app.config import SETTINGS_ENV, ConfigError, Settings

_PR_SET_PDEATHSIG = 1


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn settings from config.yml's ``log`` and ``http.tls``, and the protocol that bounds request heads."""
    from app.protocol import BoundedHeadProtocol  # imports uvicorn: not at module level, as main() does

    options: dict[str, Any] = {
        "http": BoundedHeadProtocol,
        "log_level": settings.log.level.lower(),
        "access_log": not settings.log.accesslog.disabled,
        "server_header": False,
    }
    tls = settings.http.model_extra.get("tls") if settings.http.model_extra else None
    if isinstance(tls, dict) and tls.get("certificate"):
        options |= {"ssl_certfile": tls["certificate"], "ssl_keyfile": tls.get("key")}
        if tls.get("clientcas"):
            # registry:2's mutual TLS: a client certificate signed by one of these CAs is required.
            options |= {"ssl_ca_certs": client_cas(settings.root, tls["clientcas"]), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def client_cas(root: str, paths: list[str] | str) -> str:
    """One CA file for uvicorn: the file itself, or the files of the list joined under ``<root>/kura/tls``."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if len(paths) == 1:
        return paths[0]
    bundle = b""
    for path in paths:
        try:
            with open(path, "rb") as f:
                bundle += f.read().rstrip(b"\n") + b"\n"
        except OSError as exc:
            raise ConfigError(f"http.tls.clientcas: cannot read {path}: {exc.strerror}") from None
    directory = os.path.join(root, "kura", "tls")
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, "clientcas.pem")
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".clientcas-")
    with os.fdopen(fd, "wb") as f:
        f.write(bundle)
    os.replace(temporary, target)  # workers write the same bytes; each sees a whole file
    return target


def die_with(parent: int) -> None:
    """Exit when the supervisor does, even if it is killed with no chance to stop us (SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(0)


def main(argv: list[str]) -> int:
    fd, parent = int(argv[0]), int(argv[1])
    die_with(parent)
    import uvicorn

    from app.main import served_app

    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    host, port = settings.listen()
    config = uvicorn.Config(served_app(settings), host=host, port=port, **uvicorn_options(settings))
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
