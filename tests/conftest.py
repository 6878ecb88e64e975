from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from storage import Options, Registry
from tests.e2e import servers


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture, module-scoped servers included
    servers.marked_e2e = item.get_closest_marker("e2e") is not None


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "root")


@pytest.fixture
def registry(root: str) -> Registry:
    return Registry(root, Options(delete_enabled=True))


@pytest.fixture
def settings(root: str) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}},
            "catalog": {"maxentries": 1000},
        }
    )


@pytest.fixture
def app(settings: Settings) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c
