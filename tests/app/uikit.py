"""Helpers for the web UI's API tests: the CSRF token of a page, and images with chosen annotations."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.oci import Image, random_image

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found[1]


async def post_form(client: httpx.AsyncClient, page_url: str, action: str, **fields: str) -> httpx.Response:
    """Open ``page_url`` (for its token and the session cookie), then POST the form to ``action``."""
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf": csrf_of(page), **fields})


def annotated_image(annotations: dict[str, str], seed: int = 7) -> Image:
    image = random_image(layers=1, seed=seed)
    document: dict[str, Any] = json.loads(image.manifest)
    document["annotations"] = annotations
    return Image(image.config, image.layers, json.dumps(document).encode(), image.media_type, image.blobs)
