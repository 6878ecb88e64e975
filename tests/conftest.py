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

DRIVERS = ["filesystem", "inmemory"]


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
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    async with started(settings) as application:
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as c:
        yield c
