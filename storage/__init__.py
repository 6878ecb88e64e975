"""Kura's storage layer: registry:2's tree over a storage driver, byte-compatible.

No HTTP here: raise ``storage.errors``; never hold a blob in memory; every write is atomic; every
storage syscall goes through the driver (``storage.driver``, ``storage.drivers``).

The public surface, all ``app/`` may use: what this module exports, and the modules ``errors``,
``mediatypes``, ``drivers``, ``browse`` and ``usage`` (the web UI's queries).
"""

from storage import browse, drivers, errors, mediatypes, usage
from storage.blobs import BlobInfo
from storage.driver import FileReader, PathNotFound, StorageDriver
from storage.manifests import MAX_SIZE as MAX_MANIFEST_SIZE
from storage.manifests import Manifest
from storage.names import is_tag
from storage.registry import Options, Registry
from storage.secrets import secret
from storage.spool import Spool, SpoolEntry

__all__ = [
    "MAX_MANIFEST_SIZE",
    "BlobInfo",
    "FileReader",
    "Manifest",
    "Options",
    "PathNotFound",
    "Registry",
    "Spool",
    "SpoolEntry",
    "StorageDriver",
    "browse",
    "drivers",
    "errors",
    "is_tag",
    "mediatypes",
    "secret",
    "usage",
]
