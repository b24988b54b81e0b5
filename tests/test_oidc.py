"""OIDC bearer tokens: JWTs signed with keys the test generates, the issuer's JWKS and
discovery document served over real HTTP on loopback. Valid tokens authenticate with the
roles granted in the registry; expired, wrong audience, wrong issuer or foreign signatures
are refused, each saying why."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from modelvault import Forbidden, InvalidInput, Registry, Settings, Unauthenticated
from modelvault.service import identity as ident
from modelvault.service import oidc

from .conftest import FakeClock

AUDIENCE = "modelvault-test"


@dataclass
class Issuer:
    url: str
    jwks_url: str
    keys: dict[str, Any]
    requests: list[str]

    def token(self, clock: FakeClock, *, kid: str = "rsa1", key: Any = None, **claims: Any) -> str:
        now = int(clock.now.timestamp())
        body = {"iss": self.url, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "u-123"}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        algorithm = "ES256" if kid.startswith("ec") else "RS256"
        return jwt.encode(body, key or self.keys[kid], algorithm=algorithm, headers={"kid": kid})


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        out = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "RS256"
    else:
        out = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "ES256"
    return {**out, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    keys = {
        "rsa1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec1": ec.generate_private_key(ec.SECP256R1()),
    }
    requests: list[str] = []
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    documents["/keys"] = json.dumps({"keys": [_jwk(k, kid) for kid, k in keys.items()]}).encode()
    documents["/.well-known/openid-configuration"] = json.dumps(
        {"issuer": base, "jwks_uri": f"{base}/keys"}
    ).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    oidc._verifier.cache_clear()
    try:
        yield Issuer(base, f"{base}/keys", keys, requests)
    finally:
        server.shutdown()
        server.server_close()
        oidc._verifier.cache_clear()


@pytest.fixture
def oidc_reg(settings: Settings, clock: FakeClock, issuer: Issuer) -> Iterator[Registry]:
    configured = replace(
        settings,
        oidc_issuer=issuer.url,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=issuer.jwks_url,
    )
    reg = Registry(settings=configured, actor="alice", clock=clock)
    yield reg
    reg.close()


def test_a_valid_jwt_authenticates_with_the_roles_granted_to_its_user(
    oidc_reg: Registry, issuer: Issuer, clock: FakeClock
) -> None:
    ctx = oidc_reg._ctx
    ident.create_user(ctx, "carol")
    ident.grant(ctx, "fraud", "carol", "approver")
    who = ident.authenticate(ctx, issuer.token(clock, preferred_username="carol"))
    assert (who.user, who.token_id, who.project, who.global_admin) == ("carol", None, None, False)
    assert who.can("fraud", "approve") and not who.can("fraud", "promote")
    # ES256 keys of the same issuer are accepted too; without preferred_username, sub names
    # the user, who has no roles: authenticated, but allowed nothing
    nobody = ident.authenticate(ctx, issuer.token(clock, kid="ec1", sub="u-999"))
    assert (nobody.user, nobody.projects()) == ("u-999", frozenset())
    with pytest.raises(Forbidden, match="OIDC user u-999 lacks permission 'read'"):
        ident.authorize(ctx, nobody, "fraud", "read")
    assert next(iter(oidc_reg.audit(action="access.denied"))).actor == "u-999"


def test_a_global_admin_logging_in_by_oidc_is_admin(
    oidc_reg: Registry, issuer: Issuer, clock: FakeClock
) -> None:
    ident.create_user(oidc_reg._ctx, "root", admin=True)
    who = ident.authenticate(oidc_reg._ctx, issuer.token(clock, preferred_username="root"))
    assert who.global_admin and who.projects() is None


@pytest.mark.parametrize(
    ("change", "says", "reason"),
    [
        ({"exp": -60}, "expired", "expired"),
        ({"aud": "someone-else"}, "not meant for this server", "audience"),
        ({"iss": "https://evil.example.com"}, "was not issued by", "issuer"),
        ({"exp": None}, "lacks the claim 'exp'", "malformed"),
        ({"nbf": 3600}, "not valid yet", "not_yet"),
        ({"sub": None}, "names no user", "malformed"),
    ],
)
def test_invalid_claims_are_refused(
    oidc_reg: Registry,
    issuer: Issuer,
    clock: FakeClock,
    change: dict[str, Any],
    says: str,
    reason: str,
) -> None:
    now = int(clock.now.timestamp())
    claims = {
        k: (now + v if k in ("exp", "nbf") and v is not None else v) for k, v in change.items()
    }
    with pytest.raises(Unauthenticated, match=says) as caught:
        ident.authenticate(oidc_reg._ctx, issuer.token(clock, **claims))
    assert caught.value.reason == reason


def test_an_expired_jwt_is_judged_by_the_registry_clock(
    oidc_reg: Registry, issuer: Issuer, clock: FakeClock
) -> None:
    token = issuer.token(clock, preferred_username="carol")
    assert ident.authenticate(oidc_reg._ctx, token).user == "carol"
    clock.advance(minutes=6)
    with pytest.raises(Unauthenticated, match="expired"):
        ident.authenticate(oidc_reg._ctx, token)


def test_a_jwt_signed_by_another_key_is_refused(
    oidc_reg: Registry, issuer: Issuer, clock: FakeClock
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # claiming the issuer's key id: the signature does not verify
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        ident.authenticate(oidc_reg._ctx, issuer.token(clock, key=other))
    # naming a key the issuer does not publish
    with pytest.raises(Unauthenticated, match="key the issuer does not publish"):
        ident.authenticate(oidc_reg._ctx, issuer.token(clock, kid="rsa-unknown", key=other))
    # an HMAC token "signed" with the public key (algorithm confusion)
    public_pem = (
        issuer.keys["rsa1"]
        .public_key()
        .public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    forged = _hs256(
        {"iss": issuer.url, "aud": AUDIENCE, "exp": int(clock.now.timestamp()) + 60, "sub": "x"},
        public_pem,
    )
    with pytest.raises(Unauthenticated):
        ident.authenticate(oidc_reg._ctx, forged)


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "x" * 10_240, "eyJ\x00.e.e"])
def test_garbage_bearer_tokens_are_malformed(oidc_reg: Registry, token: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        ident.authenticate(oidc_reg._ctx, token)
    assert caught.value.reason == "malformed"


def test_without_oidc_configured_a_jwt_is_a_malformed_token(
    reg: Registry, issuer: Issuer, clock: FakeClock
) -> None:
    with pytest.raises(Unauthenticated, match="malformed") as caught:
        ident.authenticate(reg._ctx, issuer.token(clock))
    assert caught.value.reason == "malformed"
    assert issuer.requests == []


def test_the_keys_are_found_through_the_discovery_document_and_kept(
    settings: Settings, clock: FakeClock, issuer: Issuer, as_user: Callable[[str], Registry]
) -> None:
    reg = Registry(
        settings=replace(settings, oidc_issuer=issuer.url, oidc_audience=AUDIENCE),
        actor="alice",
        clock=clock,
    )
    try:
        for _ in range(3):
            assert ident.authenticate(reg._ctx, issuer.token(clock, sub="dave")).user == "dave"
    finally:
        reg.close()
    assert issuer.requests == ["/.well-known/openid-configuration", "/keys"]


def test_an_issuer_without_an_audience_is_a_configuration_error(
    settings: Settings, clock: FakeClock, issuer: Issuer
) -> None:
    reg = Registry(settings=replace(settings, oidc_issuer=issuer.url), actor="alice", clock=clock)
    try:
        with pytest.raises(InvalidInput, match="MODELVAULT_OIDC_AUDIENCE"):
            ident.authenticate(reg._ctx, issuer.token(clock))
    finally:
        reg.close()
