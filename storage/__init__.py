"""Kura's storage layer: registry:2's on-disk tree, byte-compatible.

No HTTP here: raise ``storage.errors``; never hold a blob in memory; every write is atomic.
"""

from storage.registry import Options, Registry

__all__ = ["Options", "Registry"]
