"""registry:2's auth configs start Kura unchanged, and the same credentials and tokens work on both
(Debian's docker-registry 2.8.2 serving the same root): htpasswd, an external token issuer (tokens
signed in the test with PyJWT under a CA it made), and registry:2 trusting Kura's own token server."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import yaml

from tests.authkit import CA, ISSUER, SERVICE, bearer, repository
from tests.e2e.authsetup import PASSWORDS, htpasswd_config, kura_with, token_issuer, tokenserver_config, write_config
from tests.e2e.conftest import Skopeo
from tests.e2e.servers import Listener, registry2_serving
from tests.oci import random_image, write_oci_layout

pytestmark = pytest.mark.e2e
ALICE = f"alice:{PASSWORDS['alice']}"


def layout(tmp_path: Path, seed: int) -> tuple[str, bytes]:
    image = random_image(layers=2, size=5000, seed=seed)
    write_oci_layout(str(tmp_path / f"layout{seed}"), image, "v1")
    return f"oci:{tmp_path / f'layout{seed}'}:v1", image.manifest


def manifest_via(skopeo: Skopeo, host: str, repo: str, creds: str = ALICE) -> bytes:
    out = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"docker://{host}/{repo}:v1")
    return out.encode()


def test_htpasswd_config_works_on_both(tmp_path: Path, root: str, skopeo: Skopeo, listener: Listener) -> None:
    """One registry:2 config.yml (auth.htpasswd, and Kura's policies, which registry:2 ignores)."""
    config = htpasswd_config(str(tmp_path), root, listener.port)
    source, body = layout(tmp_path, 71)
    with kura_with(config, root, listener) as url:
        host = url.removeprefix("http://")
        skopeo.copy(source, f"docker://{host}/e2e/both:v1", "--dest-creds", ALICE)
    with registry2_serving(config, str(tmp_path / "registry2.log")) as url:
        host = url.removeprefix("http://")
        assert manifest_via(skopeo, host, "e2e/both") == body
        r = httpx.get(f"{url}/v2/e2e/both/manifests/v1")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="Kura e2e"'
        with pytest.raises(AssertionError):
            manifest_via(skopeo, host, "e2e/both", "alice:wrong")
        other, other_body = layout(tmp_path, 72)
        skopeo.copy(other, f"docker://{host}/e2e/from-registry2:v1", "--dest-creds", ALICE)
    with kura_with(config, root, listener) as url:
        assert manifest_via(skopeo, url.removeprefix("http://"), "e2e/from-registry2") == other_body


def token_config(tmp_path: Path, root: str, realm: str, bundle: str) -> str:
    document = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}},
        "http": {"addr": "127.0.0.1:5000"},
        "auth": {"token": {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": bundle}},
    }
    return write_config(str(tmp_path / "token.yml"), document)


def test_external_token_issuer_on_both(tmp_path: Path, root: str, skopeo: Skopeo, listener: Listener) -> None:
    """registry:2's auth.token with an issuer of our own: x5c tokens work on both, as do libtrust kids;
    an RFC 7638 kid works on Kura (registry 3's way) and not on registry:2 2.8.2, as measured."""
    ca = CA()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.pem())
    signer = ca.leaf(via_intermediate=True)
    source, body = layout(tmp_path, 73)
    with token_issuer(signer) as realm:
        config = token_config(tmp_path, root, realm, str(bundle))
        with kura_with(config, root, listener) as url:
            host = url.removeprefix("http://")
            skopeo.copy(source, f"docker://{host}/ext/app:v1", "--dest-creds", ALICE)
            assert manifest_via(skopeo, host, "ext/app") == body
        with registry2_serving(config, str(tmp_path / "registry2.log")) as url:
            assert manifest_via(skopeo, url.removeprefix("http://"), "ext/app") == body
            r = httpx.get(f"{url}/v2/ext/app/tags/list")
            assert r.headers["www-authenticate"] == (
                f'Bearer realm="{realm}",service="{SERVICE}",scope="repository:ext/app:pull"'
            )

    from cryptography.hazmat.primitives.asymmetric import ec

    from app.auth.keys import libtrust_key_id, thumbprints

    key = ca.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    root_signer = ca.root_signer()
    libtrust = root_signer.token([repository("ext/app", "pull")], headers={"kid": libtrust_key_id(key)})
    thumbprint = root_signer.token([repository("ext/app", "pull")], headers={"kid": sorted(thumbprints(key))[0]})
    config = token_config(tmp_path, root, "http://127.0.0.1:1/token", str(bundle))
    with registry2_serving(config, str(tmp_path / "registry2-kid.log")) as url:
        assert httpx.get(f"{url}/v2/ext/app/tags/list", headers=bearer(libtrust)).status_code == 200
        assert httpx.get(f"{url}/v2/ext/app/tags/list", headers=bearer(thumbprint)).status_code == 401
    with kura_with(config, root, listener) as url:
        for token in (libtrust, thumbprint):
            r = httpx.get(f"{url}/v2/ext/app/tags/list", headers=bearer(token))
            assert r.status_code == 200 and r.json()["tags"] == ["v1"]


def test_registry2_trusts_kuras_token_server(tmp_path: Path, root: str, skopeo: Skopeo, listener: Listener) -> None:
    """Kura's token server signs with x5c: registry:2, given <root>/kura/auth/token.crt, accepts its tokens."""
    config = tokenserver_config(str(tmp_path), root, listener.port)
    source, body = layout(tmp_path, 74)
    with kura_with(config, root, listener) as url:
        skopeo.copy(source, f"docker://{url.removeprefix('http://')}/e2e/signed:v1", "--dest-creds", ALICE)
        with open(config) as f:
            document = yaml.safe_load(f)
        document["auth"]["token"]["rootcertbundle"] = os.path.join(root, "kura", "auth", "token.crt")
        del document["kura"]
        r2_config = write_config(str(tmp_path / "registry2.yml"), document)
        with registry2_serving(r2_config, str(tmp_path / "registry2.log")) as r2:
            assert manifest_via(skopeo, r2.removeprefix("http://"), "e2e/signed") == body
            with pytest.raises(AssertionError):
                manifest_via(skopeo, r2.removeprefix("http://"), "e2e/signed", "mallory:" + PASSWORDS["mallory"])
