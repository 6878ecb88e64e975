"""Domain errors raised by the storage layer.

They carry no HTTP codes or statuses: ``app.errors`` maps each class to its OCI error code once.
When one condition needs two wire codes (a blob missing on GET vs. during a manifest PUT), there are
two classes, so the HTTP layer never has to guess.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the storage layer raises on purpose."""

    def __init__(self, message: str = "", detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NameInvalid(StorageError):
    pass


class NameUnknown(StorageError):
    pass


class TagInvalid(StorageError):
    pass


class DigestInvalid(StorageError):
    pass


class TagExists(StorageError):
    """A tag that may only be created (``create_only``) names another manifest already."""


class Unsupported(StorageError):
    """The operation is not offered (e.g. deletes are disabled)."""


class DeleteDisabled(Unsupported):
    """Deletes are off (``Options.delete_enabled``)."""


class ReadOnly(StorageError):
    pass


class BlobUnknown(StorageError):
    pass


class SizeInvalid(StorageError):
    pass


class UploadUnknown(StorageError):
    pass


class UploadInvalid(StorageError):
    pass


class UploadBusy(UploadInvalid):
    """Another request holds the upload (a body still streaming in, or a commit under way)."""


class RangeInvalid(StorageError):
    """A chunk does not start where the upload ends; ``size`` is what the upload holds now."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, {"size": size})
        self.size = size


class ManifestUnknown(StorageError):
    pass


class ManifestInvalid(StorageError):
    pass


class ManifestBlobUnknown(StorageError):
    pass


class ManifestTooLarge(StorageError):
    pass
