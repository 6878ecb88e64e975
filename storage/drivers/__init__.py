"""The storage drivers Kura ships, by registry:2's driver names (the key under ``storage:``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.driver import StorageDriver
from storage.drivers.filesystem import FilesystemDriver
from storage.drivers.instrumented import InstrumentedDriver
from storage.drivers.memory import InMemoryDriver

__all__ = ["FilesystemDriver", "InMemoryDriver", "InstrumentedDriver", "create"]

NAMES = ("filesystem", "inmemory")


def create(name: str, parameters: Mapping[str, Any]) -> StorageDriver:
    """A driver from its config section: ``filesystem`` takes ``rootdirectory``; ``inmemory`` takes nothing."""
    if name == "filesystem":
        return FilesystemDriver(str(parameters["rootdirectory"]))
    if name == "inmemory":
        return InMemoryDriver()
    raise ValueError(f"unknown storage driver {name!r}")
