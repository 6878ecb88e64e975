"""Registries with auth for the end-to-end suite: registry:2-style config files, a ``kura serve`` on
them, an httpx client that answers challenges as docker does, and an external token issuer."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from tests.authkit import ISSUER, SERVICE, Signer, htpasswd
from tests.e2e.servers import Listener, kura_argv, running

PASSWORDS = {"alice": "alice-e2e-pw", "admin": "admin-e2e-pw", "mallory": "mallory-e2e-pw", "ci": "ci-e2e-pw"}
POLICIES: dict[str, Any] = {
    "admins": ["admin"],
    "repositories": {
        "e2e/**": {
            "policies": [
                {"users": ["alice"], "actions": ["pull", "push", "delete"]},
                {"users": ["ci"], "actions": ["pull", "create"]},  # publishes tags, never moves one
            ]
        },
        "ro/**": {"policies": [{"users": ["alice"], "actions": ["pull"]}]},
        "public/**": {"anonymous": ["pull"], "policies": [{"users": ["alice"], "actions": ["push"]}]},
    },
}
REALM = "Kura e2e"


@dataclass
class Registry:
    mode: str  # "htpasswd" or "tokenserver"
    url: str
    config: str
    root: str

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


def write_config(path: str, document: dict[str, Any]) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(document, f)
    return path


def htpasswd_config(work: str, root: str, port: int, policies: dict[str, Any] | None = POLICIES) -> str:
    """A registry:2 config.yml with ``auth.htpasswd``, plus Kura's policies (registry:2 ignores ``kura:``)."""
    accounts = htpasswd(os.path.join(work, "htpasswd"), PASSWORDS)
    document: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"htpasswd": {"realm": REALM, "path": accounts}},
    }
    if policies:
        document["kura"] = {"auth": policies}
    return write_config(os.path.join(work, "htpasswd.yml"), document)


def tokenserver_config(work: str, root: str, port: int) -> str:
    accounts = htpasswd(os.path.join(work, "htpasswd"), PASSWORDS)
    document = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"token": {"realm": f"http://127.0.0.1:{port}/auth/token", "service": "kura-e2e", "issuer": "kura"}},
        "kura": {"auth": POLICIES | {"tokenserver": {"enabled": True, "htpasswd": accounts}}},
    }
    return write_config(os.path.join(work, "tokenserver.yml"), document)


@contextlib.contextmanager
def kura_with(config: str, root: str, listener: Listener, *args: str) -> Iterator[str]:
    log = os.path.join(os.path.dirname(config), f"kura-{listener.port}.log")
    argv = kura_argv(root, listener, "--config", config, *args)
    with running(argv, f"http://127.0.0.1:{listener.port}", log) as url:
        yield url


def _challenge(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


class Authed(httpx.Auth):
    """Basic credentials, or docker's token dance when the registry answers with a Bearer challenge."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        basic = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.headers["Authorization"] = basic
        response = yield request
        header = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not header.startswith("Bearer "):
            return
        params = _challenge(header)
        query = {"service": params.get("service", "")} | ({"scope": params["scope"]} if "scope" in params else {})
        token = httpx.get(params["realm"], params=query, headers={"Authorization": basic}).json()["token"]
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def client(url: str, user: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=url, auth=Authed(user, PASSWORDS[user]), timeout=30)


def authfile(path: str, host: str, user: str = "alice") -> str:
    """A containers-auth.json (skopeo/podman/buildah ``--authfile``; docker's config.json too)."""
    auth = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    with open(path, "w") as f:
        json.dump({"auths": {host: {"auth": auth}}}, f)
    return path


# -- an external token issuer ---------------------------------------------------------------------


@contextlib.contextmanager
def token_issuer(signer: Signer, headers: dict[str, Any] | None = None) -> Iterator[str]:
    """A minimal token server in a thread: any account in PASSWORDS gets every scope it asks for.

    It stands for the separate issuer (docker_auth, Harbor core, ...) that registry:2's auth.token
    expects; the tokens are signed with PyJWT under a CA the test made.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            user = ""
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if PASSWORDS.get(user) != password:
                    self.send_response(401)
                    self.end_headers()
                    return
            access = []
            for scope in (s for value in query.get("scope", []) for s in value.split()):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            token = signer.token(access, headers=headers, sub=user, iss=ISSUER, aud=SERVICE)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()
