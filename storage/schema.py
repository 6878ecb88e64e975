"""Pydantic views of manifest JSON, used only to validate a PUT. Stored bytes are never re-serialised."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# JSON integers only (strict: no true, "6" or 6.0), as Go's int64 fields in registry:2.
# Literal[2] is not used for the version: pydantic matches it by ==, so 2.0 would pass.
Size = Annotated[int, Field(strict=True, ge=0, lt=2**63)]
SchemaVersion = Annotated[int, Field(strict=True, ge=2, le=2)]


class _Lenient(BaseModel):
    # Unknown fields are allowed and kept out of the way: manifests evolve faster than we do.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Platform(_Lenient):
    architecture: str
    os: str


class Descriptor(_Lenient):
    mediaType: str = Field(min_length=1)
    digest: str
    size: Size
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    platform: Platform | None = None
    artifactType: str | None = None


class ImageManifest(_Lenient):
    schemaVersion: SchemaVersion
    mediaType: str | None = None
    artifactType: str | None = None
    config: Descriptor
    layers: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class Index(_Lenient):
    schemaVersion: SchemaVersion
    mediaType: str | None = None
    artifactType: str | None = None
    manifests: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


def first_error(exc: Any) -> dict[str, Any]:
    """A short, JSON-safe description of the first pydantic validation error."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errors:
        return {}
    err = errors[0]
    return {"field": ".".join(str(p) for p in err["loc"]), "reason": err["msg"]}
