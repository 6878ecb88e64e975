"""Bearer tokens as registry:2 verifies them: signatures, key IDs, time, audience, algorithms."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from app.auth.keys import libtrust_key_id, thumbprints
from app.auth.tokens import InvalidToken, TokenVerifier
from app.main import create_app
from tests.app.authworld import TOKEN_REALM, client_for, seed, token_settings
from tests.authkit import CA, ISSUER, SERVICE, Signer, bearer, repository

PULL = [repository("team/app", "pull")]


def verifier(ca: CA, **kwargs: Any) -> TokenVerifier:
    options: dict[str, Any] = {"algorithms": ["ES256", "RS256", "HS256", "EdDSA"]} | kwargs
    return TokenVerifier(ISSUER, SERVICE, [ca.cert], **options)


class TestSignatures:
    def test_x5c_leaf_chain_and_intermediate(self) -> None:
        """A leaf certificate in x5c, directly or through an intermediate, verifies against the root."""
        ca = CA()
        for signer in (ca.leaf(), ca.leaf(via_intermediate=True), ca.root_signer()):
            claims = verifier(ca).verify(signer.token(PULL))
            assert claims.subject == "alice"
            assert claims.actions("repository", "team/app") == {"pull"}

    def test_chain_to_another_ca_is_refused(self) -> None:
        with pytest.raises(InvalidToken, match="trusted root"):
            verifier(CA()).verify(CA().leaf().token(PULL))

    def test_signature_by_another_key_is_refused(self) -> None:
        """x5c names a trusted certificate, but another key signed: the signature check fails."""
        ca = CA()
        impostor = Signer(ec.generate_private_key(ec.SECP256R1()), ca.leaf().cert, [])
        with pytest.raises(InvalidToken):
            verifier(ca).verify(impostor.token(PULL))

    def test_expired_leaf_certificate_is_refused(self) -> None:
        ca = CA()
        signer = ca.leaf(days=-1)
        with pytest.raises(InvalidToken, match="expired"):
            verifier(ca).verify(signer.token(PULL))

    def test_libtrust_kid_and_thumbprint_kid(self) -> None:
        """registry 2.8 names the key by its libtrust ID, registry 3 by its RFC 7638 thumbprint."""
        ca = CA()
        key = ca.cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        for kid in [libtrust_key_id(key), *thumbprints(key)]:
            token = ca.root_signer().token(PULL, headers={"kid": kid})
            assert verifier(ca).verify(token).subject == "alice"
        with pytest.raises(InvalidToken, match="untrusted"):
            verifier(ca).verify(ca.root_signer().token(PULL, headers={"kid": "ABCD:EFGH"}))
        with pytest.raises(InvalidToken, match="untrusted"):
            verifier(ca).verify(ca.root_signer().token(PULL, headers={}))

    def test_libtrust_id_format(self) -> None:
        """Twelve groups of four base32 characters: 240 bits of SHA-256 over the DER key."""
        kid = libtrust_key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
        groups = kid.split(":")
        assert len(groups) == 12 and all(re.fullmatch("[A-Z2-7]{4}", g) for g in groups)

    def test_jwks_key(self, tmp_path: Path) -> None:
        """A key of the jwks file, named by its kid (an RS256 key here)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "key-1", "use": "sig"}
        keyset = jwt.PyJWKSet.from_dict({"keys": [jwk]})
        v = TokenVerifier(ISSUER, SERVICE, [], keyset.keys, ["RS256"])
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": SERVICE, "sub": "ci", "exp": now + 60, "access": PULL}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "key-1"})
        assert v.verify(token).subject == "ci"


class TestClaims:
    @pytest.mark.parametrize(
        "claims, accepted",
        [
            ({"exp": -30}, True),  # expired 30 s ago: within registry:2's 60 s leeway
            ({"exp": -90}, False),
            ({"nbf": 30}, True),
            ({"nbf": 90}, False),
            ({"aud": "another-service"}, False),
            ({"aud": ["another-service", SERVICE]}, True),
            ({"iss": "someone-else"}, False),
        ],
    )
    def test_time_audience_issuer(self, claims: dict[str, Any], accepted: bool) -> None:
        ca = CA()
        now = int(time.time())
        fields = {k: now + v if k in ("exp", "nbf") else v for k, v in claims.items()}
        token = ca.leaf().token(PULL, **fields)
        if accepted:
            assert verifier(ca).verify(token).subject == "alice"
        else:
            with pytest.raises(InvalidToken):
                verifier(ca).verify(token)

    def test_missing_exp_is_refused(self) -> None:
        ca = CA()
        signer = ca.leaf()
        token = jwt.encode({"iss": ISSUER, "aud": SERVICE, "access": PULL}, signer.key, "ES256", {"x5c": signer.x5c()})
        with pytest.raises(InvalidToken):
            verifier(ca).verify(token)

    def test_an_exp_past_any_float_is_refused(self) -> None:
        """Issue: exp = 10**400, signed by a trusted key, was an OverflowError: a 500."""
        ca = CA()
        with pytest.raises(InvalidToken, match="exp"):
            verifier(ca).verify(ca.leaf().token(PULL, exp=10**400))

    def test_a_certificate_with_garbled_extensions_is_refused(self) -> None:
        """Issue: extensions are parsed lazily; garbage in an x5c certificate's BasicConstraints (no
        signature needed to get there) was a ValueError: a 500 for anyone who sent it."""
        ca = CA()
        signer = ca.leaf()
        key = ec.generate_private_key(ec.SECP256R1())
        garbled = (
            x509.CertificateBuilder()
            .subject_name(ca.cert.subject)
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(ca.cert.not_valid_before_utc)
            .not_valid_after(ca.cert.not_valid_after_utc)
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02\x03"), critical=False)
            .sign(key, hashes.SHA256())
        )
        chain = Signer(signer.key, signer.cert, [garbled])
        with pytest.raises(InvalidToken):
            verifier(ca).verify(chain.token(PULL))

    def test_malformed_access_is_refused(self) -> None:
        ca = CA()
        with pytest.raises(InvalidToken, match="access"):
            verifier(ca).verify(ca.leaf().token([], access="everything"))


class TestAlgorithms:
    def test_alg_none_is_refused(self) -> None:
        ca = CA()
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": SERVICE, "sub": "alice", "exp": now + 60, "access": PULL}
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        with pytest.raises(InvalidToken, match="algorithm"):
            verifier(ca, algorithms=["none", "ES256"]).verify((header + b"." + body + b".").decode())

    def test_algorithm_outside_the_allow_list_is_refused(self) -> None:
        ca = CA()
        with pytest.raises(InvalidToken, match="algorithm"):
            verifier(ca, algorithms=["RS256"]).verify(ca.leaf().token(PULL))

    def test_hmac_with_the_public_key_is_refused(self) -> None:
        """The classic confusion: HS256 keyed with the (public) certificate key's PEM bytes."""
        ca = CA()
        signer = ca.leaf()
        secret = signer.cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": SERVICE, "exp": now + 60, "access": PULL}
        header = {"alg": "HS256", "typ": "JWT", "x5c": signer.x5c()}
        message = b".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
        token = message + b"." + _b64(hmac.new(secret, message, hashlib.sha256).digest())
        with pytest.raises(InvalidToken):
            verifier(ca).verify(token.decode())


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


async def test_garbage_tokens_get_invalid_token(root: str, tmp_path: Path) -> None:
    """Malformed tokens of every shape are a 401 invalid_token, never a 500."""
    await seed(root)
    app = create_app(token_settings(root, str(tmp_path), CA()))
    async with client_for(app) as client:
        for token in ["x", "a.b.c", "e30.e30.", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "Zm9v" * 1000]:
            r = await client.get("/v2/team/app/tags/list", headers=bearer(token))
            assert r.status_code == 401, token
            assert r.headers["www-authenticate"] == (
                f'Bearer realm="{TOKEN_REALM}",service="{SERVICE}",scope="repository:team/app:pull",'
                'error="invalid_token"'
            )


async def test_challenge_bytes_for_a_mount(root: str, tmp_path: Path) -> None:
    """A mount's challenge asks for pull,push on the target and pull on the source, as registry:2."""
    await seed(root)
    app = create_app(token_settings(root, str(tmp_path), CA()))
    async with client_for(app) as client:
        r = await client.post("/v2/team/app/blobs/uploads/?mount=sha256:" + "a" * 64 + "&from=other/app")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="{TOKEN_REALM}",service="{SERVICE}",'
        'scope="repository:team/app:pull,push repository:other/app:pull"'
    )
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.content == (
        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":['
        b'{"Type":"repository","Class":"","Name":"team/app","Action":"pull"},'
        b'{"Type":"repository","Class":"","Name":"team/app","Action":"push"},'
        b'{"Type":"repository","Class":"","Name":"other/app","Action":"pull"}]}]}'
    )


async def test_autoredirect_realm_follows_the_host(root: str, tmp_path: Path) -> None:
    await seed(root)
    app = create_app(token_settings(root, str(tmp_path), CA(), autoredirect=True, realm=""))
    async with client_for(app) as client:
        r = await client.get("/v2/", headers={"Host": "reg.example:5000", "X-Forwarded-Proto": "http"})
    assert r.headers["www-authenticate"] == f'Bearer realm="http://reg.example:5000/auth/token",service="{SERVICE}"'


async def test_catalog_needs_the_catalog_scope(root: str, tmp_path: Path) -> None:
    """A token with repository access only gets insufficient_scope on _catalog, as on registry:2 2.8.2."""
    await seed(root)
    ca = CA()
    app = create_app(token_settings(root, str(tmp_path), ca))
    async with client_for(app) as client:
        r = await client.get("/v2/_catalog", headers=bearer(ca.leaf().token(PULL)))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith(',scope="registry:catalog:*",error="insufficient_scope"')


async def test_bad_tokens_are_not_rate_limited(root: str, tmp_path: Path) -> None:
    """Nobody guesses a signature, and clients do send tokens that just expired: no 429 for tokens."""
    await seed(root)
    ca = CA()
    app = create_app(token_settings(root, str(tmp_path), ca, {"ratelimit": {"failures": 1, "window": 60}}))
    async with client_for(app) as client:
        for _ in range(3):
            assert (await client.get("/v2/", headers=bearer("x.y.z"))).status_code == 401
        assert (await client.get("/v2/", headers=bearer(ca.leaf().token(PULL)))).status_code == 200
