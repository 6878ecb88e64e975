"""What a newcomer types that goes wrong: each mistake is one clear line on stderr, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.images.remote import describe
from tests.e2e.servers import REPO, refusing_port


def kura(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "KURA_"))}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=environ | (env or {}),
    )


def one_line_error(result: subprocess.CompletedProcess[str], rc: int, *expected: str) -> str:
    assert result.returncode == rc, result
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for text in expected:
        assert text in line, line
    return line


class TestServe:
    def test_a_root_that_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_text("x")
        one_line_error(
            kura("serve", "--root", str(tmp_path / "f")), 2, f"storage root {tmp_path / 'f'}", "not a directory"
        )

    @pytest.mark.parametrize("value", ["abc", "0", "-1"])
    def test_kura_workers_not_a_number(self, tmp_path: Path, value: str) -> None:
        result = kura("serve", "--root", str(tmp_path), env={"KURA_WORKERS": value})
        one_line_error(result, 2, "KURA_WORKERS must be a whole number", repr(value))

    def test_workers_flag_not_a_number(self, tmp_path: Path) -> None:
        result = kura("serve", "--root", str(tmp_path), "--workers", "two")
        assert result.returncode == 2 and "--workers must be a whole number" in result.stderr
        assert "Traceback" not in result.stderr

    def test_registry_http_addr_without_a_colon(self, tmp_path: Path) -> None:
        result = kura("serve", "--root", str(tmp_path), env={"REGISTRY_HTTP_ADDR": "5055"})
        one_line_error(result, 2, "http.addr must be [host]:port, got '5055'", "did you mean :5055?")

    def test_a_port_in_use_with_one_worker(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = str(taken.getsockname()[1])
            result = kura("serve", "--root", str(tmp_path), "--host", "127.0.0.1", "--port", port, "--workers", "1")
        stderr = result.stderr.strip().splitlines()
        assert result.returncode == 2 and stderr == [f"kura: cannot listen on 127.0.0.1:{port}: Address already in use"]

    def test_a_debug_port_in_use(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = {"REGISTRY_HTTP_DEBUG_ADDR": f"127.0.0.1:{port}", "REGISTRY_HTTP_ADDR": "127.0.0.1:0"}
            result = kura("serve", "--root", str(tmp_path), env=env)
        one_line_error(result, 2, f"cannot listen on 127.0.0.1:{port}")

    def test_a_config_file_given_twice(self, tmp_path: Path) -> None:
        one_line_error(kura("serve", "a.yml", "--config", "b.yml"), 2, "two configuration files given")

    def test_a_missing_positional_config(self, tmp_path: Path) -> None:
        one_line_error(kura("serve", str(tmp_path / "none.yml")), 2, "cannot read configuration")

    def test_version(self) -> None:
        result = kura("--version")
        assert result.returncode == 0 and result.stdout.startswith("kura ") and result.stdout.strip() != "kura unknown"


class TestInspect:
    @pytest.mark.parametrize("platform", ["linux", "linux/", "Linux/AMD64", "linux/amd64/v8/x"])
    def test_a_malformed_platform(self, platform: str) -> None:
        result = kura("inspect", "--platform", platform, "127.0.0.1:1/a:b")
        one_line_error(result, 2, "--platform must be os/arch or os/arch/variant", repr(platform))

    def test_an_unreachable_registry_says_which_host(self) -> None:
        with refusing_port() as port:
            result = kura("inspect", f"127.0.0.1:{port}/a:b")
        one_line_error(result, 1, f"cannot reach http://127.0.0.1:{port}")

    def test_no_host_names_the_default_that_was_tried(self) -> None:
        line = describe(httpx.ConnectError("All connection attempts failed"), "http://localhost:5000", defaulted=True)
        assert line.startswith("cannot reach http://localhost:5000 (no registry host given")
        assert "host:port/repo:tag" in line

    def test_a_registry_error_is_its_own_message(self) -> None:
        request = httpx.Request("GET", "http://h:5000/v2/a/manifests/nope")
        body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]}
        response = httpx.Response(404, json=body, request=request)
        error = httpx.HTTPStatusError("404", request=request, response=response)
        line = describe(error, "http://h:5000", defaulted=False)
        assert line == "manifest unknown (MANIFEST_UNKNOWN), HTTP 404 from http://h:5000"
        assert "mozilla" not in line

    def test_a_missing_tag_on_a_local_root(self, tmp_path: Path) -> None:
        os.makedirs(tmp_path / "docker" / "registry" / "v2")
        one_line_error(kura("inspect", "--root", str(tmp_path), "a/b:nope"), 1, "kura inspect: a/b:nope:", "unknown")


class TestDemo:
    def test_host_port_is_taken_as_inspect_takes_it(self) -> None:
        with refusing_port() as port:
            line = one_line_error(kura("demo", "--registry", f"127.0.0.1:{port}"), 1)
        assert line.startswith(f"kura demo: cannot push to http://127.0.0.1:{port}: cannot reach")
        assert "unsupported protocol" not in line


class TestListeningSockets:
    """Port 0 and pre-bound sockets (``--fd``): how tests and socket-activating parents start Kura."""

    def test_port_zero_gives_every_worker_the_port_the_kernel_picked(self) -> None:
        from app.cli import listening_sockets

        sockets = listening_sockets("127.0.0.1", 0, 3)
        try:
            ports = {sock.getsockname()[1] for sock in sockets}
            assert len(ports) == 1 and ports != {0} and len({id(s) for s in sockets}) == 3
        finally:
            for sock in sockets:
                sock.close()

    @pytest.mark.parametrize("reuse_port", [True, False])
    def test_an_inherited_socket_is_shared_or_joined(self, reuse_port: bool) -> None:
        from app.cli import inherited_sockets

        parent = socket.socket()
        parent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        parent.bind(("127.0.0.1", 0))
        parent.listen(8)
        sockets = inherited_sockets(os.dup(parent.fileno()), 2, "--fd")
        try:
            assert {sock.getsockname() for sock in sockets} == {parent.getsockname()}
            assert (sockets[0] is sockets[1]) is not reuse_port  # siblings only where the parent allows them
        finally:
            for sock in {id(s): s for s in sockets}.values():
                sock.close()
            parent.close()

    def test_a_descriptor_that_is_not_listening_is_a_config_error(self) -> None:
        from app.cli import inherited_sockets
        from app.config import ConfigError

        with socket.socket() as idle, pytest.raises(ConfigError, match="not a listening TCP socket"):
            inherited_sockets(os.dup(idle.fileno()), 1, "--fd")
        with open(os.devnull) as f, pytest.raises(ConfigError, match="--fd"):
            inherited_sockets(f.fileno(), 1, "--fd")


@pytest.mark.parametrize(("host", "written"), [("127.0.0.1", "127.0.0.1:5001"), ("::1", "[::1]:5001")])
def test_a_bound_address_is_written_as_config_and_urls_take_it(host: str, written: str) -> None:
    """What ``serve`` writes back into http.addr / http.debug.addr and prints as URLs: an IPv6 host bracketed."""
    from app.cli import _address
    from app.config import _host_port

    assert _address(host, 5001) == written
    assert _host_port("http.debug.addr", written) == (host, 5001)
    assert httpx.URL(f"http://{written}/").host == host
