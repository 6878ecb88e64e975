from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from storage import Options, Registry, StorageDriver, drivers
from tests.e2e import servers

DRIVERS = ["filesystem", "inmemory"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture, module-scoped servers included
    servers.marked_e2e = item.get_closest_marker("e2e") is not None


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "root")


@pytest.fixture(params=DRIVERS)
def driver_name(request: pytest.FixtureRequest) -> str:
    """Every storage and API test that uses a driver runs once per driver."""
    name: str = request.param
    return name


@pytest.fixture
async def driver(driver_name: str, root: str) -> AsyncIterator[StorageDriver]:
    opened = drivers.create(driver_name, {"rootdirectory": root})
    yield opened
    await opened.close()


@pytest.fixture
async def registry(driver: StorageDriver) -> AsyncIterator[Registry]:
    reg = Registry(driver, Options(delete_enabled=True))
    yield reg
    await reg.close()


@pytest.fixture
def settings(root: str, driver_name: str) -> Settings:
    storage: dict[str, Any] = {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}}
    if driver_name != "filesystem":
        storage[driver_name] = None
    return Settings.model_validate({"storage": storage, "catalog": {"maxentries": 1000}})


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Starlette]:
    """The app with its lifespan run (httpx's ASGITransport runs none)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@contextlib.asynccontextmanager
async def client_of(application: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, with its lifespan run around it unless it runs already (clients may nest)."""
    async with contextlib.AsyncExitStack() as stack:
        if not hasattr(application.state, "registry"):
            await stack.enter_async_context(application.router.lifespan_context(application))
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        yield await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://registry.test"))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    async with started(settings) as application:
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as c:
        yield c
