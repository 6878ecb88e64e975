"""A seeded registry with auth configured, for the auth API tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.main import create_app
from tests.authkit import CA, ISSUER, SERVICE, htpasswd
from tests.conftest import client_of
from tests.oci import Image, push_image, random_image

REALM = "Kura test"
TOKEN_REALM = "https://auth.test/token"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "dave": "dave-secret", "root": "root-secret"}
POLICIES: dict[str, Any] = {
    "admins": ["root"],
    "groups": {"readers": ["bob"]},
    "repositories": {
        "team/**": {
            "policies": [
                {"users": ["alice"], "actions": ["pull", "push", "delete"]},
                {"groups": ["readers"], "actions": ["pull"]},
            ]
        },
    },
}


@dataclass
class World:
    image: Image
    other: Image
    upload: str  # an upload session open in team/app

    @property
    def layer(self) -> str:
        return next(iter(self.image.blobs))


client_for = client_of  # the app with its lifespan, however many clients nest


def base_settings(root: str, **extra: Any) -> dict[str, Any]:
    return {"storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}}, **extra}


async def seed(root: str) -> World:
    """team/app:v1 and other/app:v1, pushed through an open registry on the same root."""
    image, other = random_image(layers=1, seed=1), random_image(layers=1, seed=2)
    async with client_for(create_app(Settings.model_validate(base_settings(root)))) as c:
        await push_image(c, "team/app", image, "v1")
        await push_image(c, "other/app", other, "v1")
        r = await c.post("/v2/team/app/blobs/uploads/")
        return World(image, other, r.headers["docker-upload-uuid"])


def htpasswd_settings(root: str, tmp: str, policies: dict[str, Any] | None = None, **kura: Any) -> Settings:
    path = htpasswd(os.path.join(tmp, "htpasswd"), PASSWORDS)
    auth = {"htpasswd": {"realm": REALM, "path": path}}
    return Settings.model_validate(base_settings(root, auth=auth, kura={"auth": (policies or {}) | kura}))


def token_settings(root: str, tmp: str, ca: CA, policies: dict[str, Any] | None = None, **token: Any) -> Settings:
    bundle = os.path.join(tmp, "bundle.pem")
    with open(bundle, "wb") as f:
        f.write(ca.pem())
    auth = {"token": {"realm": TOKEN_REALM, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": bundle} | token}
    return Settings.model_validate(base_settings(root, auth=auth, kura={"auth": policies or {}}))
