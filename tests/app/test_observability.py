"""Metrics, access log, rejected-push lines, http.headers and health checks, through the ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

import app.health
from app import metrics
from app.config import Settings
from app.debug import debug_app
from app.logs import FIELDS, Formatter
from app.main import create_app
from app.observe import USER_KEY, handler_of
from tests.conftest import client_of
from tests.oci import push_blob, push_image, random_image, sha256


def make_settings(root: str, **extra: Any) -> Settings:
    document: dict[str, Any] = {
        "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": False}},
        "http": {"debug": {"addr": "127.0.0.1:0", "prometheus": {"enabled": True}}},
    }
    for key, value in extra.items():
        document.setdefault(key, {}).update(value)
    return Settings.model_validate(document)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def client_for(app: Any) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    if isinstance(app, Starlette):
        return client_of(app)  # the registry app, with its lifespan
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://registry.test")


@pytest.fixture
async def observed(root: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(make_settings(root))) as c:
        yield c


class TestHandlerLabels:
    @pytest.mark.parametrize(
        "path, handler",
        [
            ("/v2/", "base"),
            ("/v2/_catalog", "catalog"),
            ("/v2/a/b/tags/list", "tags"),
            ("/v2/a/manifests/latest", "manifest"),
            ("/v2/a/blobs/uploads/", "blob_upload"),
            ("/v2/a/blobs/uploads/0f3c", "blob_upload_chunk"),
            ("/v2/a/blobs/sha256:00", "blob"),
            ("/v2/a/referrers/sha256:00", "referrers"),
            ("/v2/a/blobs/uploads/x/manifests/latest", "manifest"),  # a repository named a/blobs/uploads/x
            ("/v2/a/manifests/b/blobs/sha256:00", "blob"),  # the manifest route's reference has no "/"
            ("/_kura/v1/live", "kura_live"),
            ("/_kura/v1/inspect/a/manifests/v1", "kura_inspect"),
            ("/_kura/v1/other", None),
            ("/v2/nothing", None),
            ("/favicon.ico", None),
        ],
    )
    def test_route_names_are_registry2s(self, path: str, handler: str | None) -> None:
        """Each path gets the route name registry:2 instruments it under (or none, like its 404s)."""
        assert handler_of(path) == handler


class TestMetrics:
    async def test_a_push_and_a_pull_are_counted(self, observed: httpx.AsyncClient) -> None:
        """A push raises requests_total, the byte counters and the histograms by exactly what moved."""
        image = random_image(layers=1, size=3000, seed=11)
        before_put = sample("registry_http_requests_total", code="201", handler="manifest", method="put")
        before_blob = sample("kura_bytes_pushed_total", type="blob")
        before_manifest = sample("kura_bytes_pushed_total", type="manifest")
        before_pulled = sample("kura_bytes_pulled_total", type="blob")
        before_count = sample("registry_http_request_duration_seconds_count", handler="manifest", method="put")
        await push_image(observed, "m/push", image, "v1")
        layer = image.layers[0]
        assert (await observed.get(f"/v2/m/push/blobs/{sha256(layer)}")).content == layer

        assert sample("registry_http_requests_total", code="201", handler="manifest", method="put") == before_put + 1
        blob_bytes = sum(len(b) for b in image.blobs.values())
        assert sample("kura_bytes_pushed_total", type="blob") == before_blob + blob_bytes
        assert sample("kura_bytes_pushed_total", type="manifest") == before_manifest + len(image.manifest)
        assert sample("kura_bytes_pulled_total", type="blob") == before_pulled + len(layer)
        count = sample("registry_http_request_duration_seconds_count", handler="manifest", method="put")
        assert count == before_count + 1
        assert sample("registry_http_in_flight_requests", handler="manifest") == 0
        assert sample("kura_uploads_in_progress") == 0

    async def test_a_rejected_push_counts_no_bytes(self, observed: httpx.AsyncClient) -> None:
        """Bytes of a refused upload are not 'pushed'; the 400 is counted under its code."""
        before = sample("kura_bytes_pushed_total", type="blob")
        before_400 = sample("registry_http_requests_total", code="400", handler="blob_upload", method="post")
        r = await observed.post("/v2/m/bad/blobs/uploads/", params={"digest": sha256(b"other")}, content=b"data")
        assert r.status_code == 400
        assert sample("kura_bytes_pushed_total", type="blob") == before
        assert (
            sample("registry_http_requests_total", code="400", handler="blob_upload", method="post") == before_400 + 1
        )

    async def test_buckets_are_go_metrics(self, observed: httpx.AsyncClient) -> None:
        """Histogram buckets are docker/go-metrics' (durations to 60 s, sizes 1 KiB doubling 22 times)."""
        await observed.get("/v2/")
        text = metrics.exposition().decode()
        assert 'registry_http_request_duration_seconds_bucket{handler="base",le="60.0",method="get"}' in text
        assert 'registry_http_response_size_bytes_bucket{handler="base",le="2.147483648e+09"}' in text
        assert 'registry_http_request_size_bytes_bucket{handler="base",le="1024.0"}' in text

    def test_hooks_for_the_storage_seam_gc_retention_and_auth(self) -> None:
        """The functions other layers call show up under registry:2's and Kura's names."""
        before = sample("registry_storage_action_seconds_count", driver="filesystem", action="Stat")
        metrics.observe_storage_action("filesystem", "Stat", 0.002)
        assert sample("registry_storage_action_seconds_count", driver="filesystem", action="Stat") == before + 1
        metrics.observe_gc_run(1.5, True, 3, 4096)
        metrics.observe_retention_run(False, 2)
        metrics.count_auth_failure("bad_password")
        metrics.set_storage_totals(10, 1000, 300)
        text = metrics.exposition().decode()
        for line in (
            'kura_gc_runs_total{result="success"}',
            "kura_gc_freed_bytes_total",
            'kura_retention_runs_total{result="error"}',
            'kura_auth_failures_total{reason="bad_password"}',
            "kura_bytes_saved_by_deduplication 300.0",
        ):
            assert line in text

    async def test_the_debug_app_serves_metrics_on_the_configured_path(self, root: str) -> None:
        settings = make_settings(root, http={"debug": {"addr": ":5001", "prometheus": {"enabled": True, "path": "/m"}}})
        app = create_app(settings)
        async with client_for(debug_app(settings, app.state.health)) as debug:
            r = await debug.get("/m")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "registry_http_requests_total" in r.text
            assert (await debug.get("/metrics")).status_code == 404

    async def test_without_prometheus_enabled_nothing_is_counted(self, root: str) -> None:
        settings = make_settings(root, http={"debug": {"addr": ":5001", "prometheus": {"enabled": False}}})
        before = sample("registry_http_requests_total", code="200", handler="base", method="get")
        async with client_for(create_app(settings)) as c:
            assert (await c.get("/v2/")).status_code == 200
        assert sample("registry_http_requests_total", code="200", handler="base", method="get") == before
        async with client_for(debug_app(settings, create_app(settings).state.health)) as debug:
            assert (await debug.get("/metrics")).status_code == 404


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [getattr(r, FIELDS) for r in caplog.records if r.name == "kura.access"]


class TestAccessLog:
    async def test_one_line_per_request_with_the_user_an_auth_layer_named(
        self, root: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Status, bytes both ways, duration, repository and user; the Authorization header never."""
        inner = create_app(make_settings(root))

        async def auth_layer(scope: Scope, receive: Receive, send: Send) -> None:
            scope[USER_KEY] = "alice"  # in place, as the auth layer is told to
            await inner(scope, receive, send)

        caplog.set_level(logging.INFO, logger="kura.access")
        data = b"some layer bytes"
        async with inner.router.lifespan_context(inner), client_for(auth_layer) as c:
            r = await c.post(
                "/v2/team/app/blobs/uploads/",
                params={"digest": sha256(data)},
                content=data,
                headers={"Authorization": "Basic c2VjcmV0LXRva2Vu", "User-Agent": "docker/27.0"},
            )
            assert r.status_code == 201
        (line,) = access_records(caplog)
        assert line["http.request.method"] == "POST"
        assert line["http.request.uri"] == f"/v2/team/app/blobs/uploads/?digest={sha256(data).replace(':', '%3A')}"
        assert line["http.response.status"] == 201
        assert line["http.request.read"] == len(data)
        assert line["http.response.written"] == 0
        assert line["http.response.duration"].endswith("ms")
        assert line["vars.name"] == "team/app"
        assert line["auth.user.name"] == "alice"
        assert line["http.request.useragent"] == "docker/27.0"
        text = Formatter("text", {}).format(caplog.records[-1])
        assert "c2VjcmV0LXRva2Vu" not in text and "Authorization" not in text

    async def test_accesslog_disabled(self, root: str, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="kura.access")
        async with client_for(create_app(make_settings(root, log={"accesslog": {"disabled": True}}))) as c:
            assert (await c.get("/v2/")).status_code == 200
        assert access_records(caplog) == []


class TestRejectedPushes:
    @pytest.mark.parametrize(
        "request_args, code",
        [
            (
                ("PUT", "/v2/r/manifests/v1", b'{"schemaVersion": 2}', "application/vnd.oci.image.manifest.v1+json"),
                "MANIFEST_INVALID",
            ),
            (("POST", f"/v2/r/blobs/uploads/?digest={sha256(b'x')}", b"y", None), "DIGEST_INVALID"),
            (("POST", "/v2/r/blobs/uploads/?digest=sha256:nothex", b"y", None), "DIGEST_INVALID"),
            (
                ("PUT", "/v2/r/blobs/uploads/00000000-0000-0000-0000-000000000000?digest=" + sha256(b"x"), b"x", None),
                "BLOB_UPLOAD_UNKNOWN",
            ),
            (("DELETE", "/v2/r/manifests/v1", b"", None), "UNSUPPORTED"),
        ],
    )
    async def test_each_rejection_logs_one_line_with_the_reason(
        self,
        observed: httpx.AsyncClient,
        caplog: pytest.LogCaptureFixture,
        request_args: tuple[str, str, bytes, str | None],
        code: str,
    ) -> None:
        """containerd and BuildKit drop the error body, so the reason must be in the server's log."""
        method, path, body, content_type = request_args
        headers = {"Content-Type": content_type} if content_type else {}
        caplog.set_level(logging.INFO)
        r = await observed.request(method, path, content=body, headers=headers)
        assert r.json()["errors"][0]["code"] == code
        (line,) = [rec for rec in caplog.records if rec.name == "kura"]
        assert line.levelno == logging.WARNING and line.exc_info is None
        assert code in line.getMessage() and getattr(line, FIELDS)["err.code"] == code
        assert getattr(line, FIELDS)["vars.name"] == "r"

    async def test_a_manifest_naming_a_missing_blob(
        self, observed: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        image = random_image(layers=1, seed=3)
        await push_blob(observed, "r", image.config)
        caplog.set_level(logging.INFO)
        r = await observed.put("/v2/r/manifests/v1", content=image.manifest, headers={"Content-Type": image.media_type})
        assert r.status_code == 400
        (line,) = [rec for rec in caplog.records if rec.name == "kura"]
        assert "MANIFEST_BLOB_UNKNOWN" in line.getMessage()

    async def test_a_refused_delete_names_the_key_that_enables_deletes(self, observed: httpx.AsyncClient) -> None:
        r = await observed.delete(f"/v2/r/blobs/{sha256(b'x')}")
        assert r.status_code == 405
        assert "storage.delete.enabled" in r.json()["errors"][0]["message"]

    async def test_reads_that_miss_are_not_rejections(
        self, observed: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """docker HEADs every layer before pushing it: a 404 there is normal, and only in the access log."""
        caplog.set_level(logging.INFO)
        assert (await observed.head(f"/v2/r/blobs/{sha256(b'x')}")).status_code == 404
        assert [rec for rec in caplog.records if rec.name == "kura"] == []

    async def test_a_client_that_hangs_up_mid_body_gets_no_traceback(
        self, root: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = create_app(make_settings(root))
        sent: list[dict[str, Any]] = []
        messages = iter(
            [
                {"type": "http.request", "body": b"part", "more_body": True},
                {"type": "http.disconnect"},
            ]
        )

        async def receive() -> Any:
            return next(messages)

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "PUT",
            "scheme": "http",
            "path": "/v2/r/manifests/v1",
            "raw_path": b"/v2/r/manifests/v1",
            "query_string": b"",
            "headers": [(b"content-type", b"application/vnd.oci.image.manifest.v1+json")],
            "client": ("127.0.0.1", 5),
            "server": ("127.0.0.1", 5000),
            "state": {},
            "app": app,
        }
        caplog.set_level(logging.DEBUG)
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
        assert all(rec.exc_info is None for rec in caplog.records)
        assert any("client hung up" in rec.getMessage() for rec in caplog.records)


class TestHeaders:
    async def test_registry2_defaults(self, observed: httpx.AsyncClient) -> None:
        r = await observed.get("/v2/")
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert r.headers["x-content-type-options"] == "nosniff"

    async def test_http_headers_from_the_config(self, root: str) -> None:
        """As registry:2: http.headers replaces the image's default list; each name may have several values."""
        headers = {"Strict-Transport-Security": ["max-age=31536000"], "X-Extra": ["a", "b"]}
        async with client_for(create_app(make_settings(root, http={"headers": headers}))) as c:
            r = await c.get("/v2/a/blobs/sha256:" + "0" * 64)
        assert r.status_code == 404
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        assert r.headers.get_list("x-extra") == ["a", "b"]
        assert "x-content-type-options" not in r.headers
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"


class TestHealth:
    async def test_an_interval_of_0_is_registry2s_default_not_a_busy_loop(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Issue: interval 0 polled without pause (every worker at 100 % of a core), and the loop
        swallowed the cancel, so the server never stopped. registry:2 reads 0 as 10 s."""
        slept: list[float] = []
        real_sleep = asyncio.sleep

        async def sleep(delay: float) -> None:
            slept.append(delay)
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", sleep)
        settings = make_settings(str(tmp_path / "root"), health={"storagedriver": {"enabled": True, "interval": 0}})
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            await until(lambda: slept.count(app.health.DEFAULT_INTERVAL) >= 3)
        assert 0 not in slept  # and the lifespan ended: the poll stopped

    @pytest.mark.parametrize("threshold", [0, 2])
    async def test_storage_check_fails_after_threshold_and_recovers(self, tmp_path: Path, threshold: int) -> None:
        """registry:2's semantics: 503 with {check: error} after `threshold` failures in a row, then clear."""
        parent = tmp_path / "mount"
        root = parent / "root"
        root.mkdir(parents=True)
        health = {"storagedriver": {"enabled": True, "interval": "20ms", "threshold": threshold}}
        settings = make_settings(str(root), health=health)
        app = create_app(settings)
        state = app.state.health
        polls: list[int] = []
        real = state.checks[0].update

        def counting(error: str | None) -> None:
            polls.append(0 if error is None else 1)
            real(error)

        state.checks[0].update = counting
        async with app.router.lifespan_context(app), client_for(app) as c, client_for(debug_app(settings, state)) as d:
            assert (await d.get("/debug/health")).json() == {}
            os.rename(parent, tmp_path / "unmounted")
            parent.write_text("not a directory any more")  # stat(root) is now ENOTDIR
            await until(lambda: sum(polls) >= max(threshold, 1))
            r = await d.get("/debug/health")
            assert r.status_code == 503
            assert "storagedriver_filesystem" in r.json() and "Not a directory" in r.json()["storagedriver_filesystem"]
            main = await c.get("/v2/")
            assert main.status_code == 503 and main.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert (await c.get("/_kura/v1/live")).status_code == 503
            parent.unlink()
            os.rename(tmp_path / "unmounted", parent)
            await until(lambda: polls[-1] == 0)
            assert (await d.get("/debug/health")).status_code == 200
            assert (await c.get("/_kura/v1/live")).status_code == 200

    def test_threshold_counts_failures_in_a_row(self) -> None:
        from app.health import ThresholdCheck

        check = ThresholdCheck("x", 3)
        for error in ("e1", "e2", None, "e3", "e4"):
            check.update(error)
        assert check.failing() is None  # the success reset the count
        check.update("e5")
        assert check.failing() == "e5"


async def until(condition: Any) -> None:
    import asyncio

    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
