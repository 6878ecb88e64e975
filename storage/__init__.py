"""Kura's storage layer: registry:2's tree over a storage driver, byte-compatible.

No HTTP here: raise ``storage.errors``; never hold a blob in memory; every write is atomic; every
storage syscall goes through the driver (``storage.driver``, ``storage.drivers``).
"""

from storage.blobs import BlobInfo
from storage.driver import FileReader, StorageDriver
from storage.manifests import Manifest
from storage.registry import Options, Registry

__all__ = ["BlobInfo", "FileReader", "Manifest", "Options", "Registry", "StorageDriver"]
