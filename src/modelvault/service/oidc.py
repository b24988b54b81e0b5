"""Bearer JWTs from an OIDC issuer (optional; PyJWT from the ``server`` extra): the signature
against the issuer's published keys (JWKS), then ``iss``, ``aud`` and ``exp``. The user is the
``preferred_username`` claim, else ``sub``; what that user may do comes from the roles table.
"""

from __future__ import annotations

import functools
import json
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, Unauthenticated

if TYPE_CHECKING:
    from ..settings import Settings

ALGORITHMS = ("RS256", "ES256")
LEEWAY_S = 30.0  # clock skew tolerated between the issuer and this server
FETCH_TIMEOUT_S = 10.0


def _jwt() -> Any:
    try:
        import jwt
    except ImportError:
        raise InvalidInput(
            "OIDC needs PyJWT: pip install 'modelvault[server]'", field="oidc_issuer"
        ) from None
    return jwt


def discover_jwks_url(issuer: str) -> str:
    """The ``jwks_uri`` of the issuer's OpenID discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    if not url.startswith(("https://", "http://")):
        raise InvalidInput(f"MODELVAULT_OIDC_ISSUER must be an http(s) URL, not {issuer!r}")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:
            found = json.load(answer).get("jwks_uri")
    except (OSError, ValueError, AttributeError) as exc:
        raise Unauthenticated(
            f"cannot read the OIDC issuer's discovery document {url}: {exc}", reason="oidc"
        ) from None
    if not isinstance(found, str):
        raise Unauthenticated(f"the OIDC discovery document {url} names no jwks_uri", reason="oidc")
    return found


class OIDCVerifier:
    """Verifies bearer JWTs of one issuer for one audience; keeps the key set for 5 minutes
    and refetches it when a token names a key it does not know (key rotation)."""

    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None) -> None:
        if not issuer or not audience:
            raise InvalidInput(
                "OIDC needs both MODELVAULT_OIDC_ISSUER and MODELVAULT_OIDC_AUDIENCE",
                field="oidc_audience",
            )
        self.issuer = issuer
        self.audience = audience
        self._jwks_url = jwks_url or None
        self._client: Any = None

    def _keys(self) -> Any:
        if self._client is None:
            jwt = _jwt()
            url = self._jwks_url or discover_jwks_url(self.issuer)
            try:
                self._client = jwt.PyJWKClient(url, timeout=FETCH_TIMEOUT_S, cooldown_duration=5)
            except jwt.PyJWKClientError as exc:
                raise InvalidInput(f"MODELVAULT_OIDC_JWKS_URL: {exc}") from None
        return self._client

    def claims(self, token: str, *, now: datetime) -> dict[str, Any]:
        """The verified claims of *token*; Unauthenticated names what failed."""
        jwt = _jwt()
        try:
            key = self._keys().get_signing_key_from_jwt(token)
            # expiry is checked below against the registry's clock, which tests inject
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthenticated(
                f"cannot fetch the OIDC issuer's signing keys: {exc}", reason="oidc"
            ) from None
        except jwt.PyJWKClientError:
            raise Unauthenticated(
                "the OIDC token is signed by a key the issuer does not publish", reason="signature"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"the OIDC token is not meant for this server (aud is not {self.audience!r})",
                reason="audience",
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"the OIDC token was not issued by {self.issuer}", reason="issuer"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "the OIDC token's signature does not verify", reason="signature"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(
                f"the OIDC token lacks the claim {exc.claim!r}", reason="malformed"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated(
                f"the OIDC token's algorithm is not one of {', '.join(ALGORITHMS)}",
                reason="malformed",
            ) from None
        except (jwt.PyJWTError, ValueError):
            raise Unauthenticated(
                "malformed token (neither mvt_... nor a valid JWT)", reason="malformed"
            ) from None
        moment = now.timestamp()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise Unauthenticated("the OIDC token's exp is not a number", reason="malformed")
        if moment >= exp + LEEWAY_S:
            raise Unauthenticated("the OIDC token has expired", reason="expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and moment < nbf - LEEWAY_S:
            raise Unauthenticated("the OIDC token is not valid yet (nbf)", reason="not_yet")
        return claims

    def user(self, token: str, *, now: datetime) -> str:
        """The user a valid token names: ``preferred_username``, else ``sub``."""
        claims = self.claims(token, now=now)
        for claim in ("preferred_username", "sub"):
            name = claims.get(claim)
            if isinstance(name, str) and 0 < len(name) <= 256 and "\x00" not in name:
                return name
        raise Unauthenticated(
            "the OIDC token names no user (preferred_username or sub)", reason="malformed"
        )


@functools.lru_cache(maxsize=8)
def _verifier(issuer: str, audience: str, jwks_url: str) -> OIDCVerifier:
    return OIDCVerifier(issuer, audience, jwks_url or None)


def verifier_for(settings: Settings) -> OIDCVerifier:
    """One verifier per configuration, so its cached key set serves every request."""
    return _verifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)
