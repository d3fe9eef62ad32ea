"""Verification of signed JWTs against a set of public keys.

The same path serves the local development issuer, Better Auth's jwt plugin and Better Auth's
MCP OAuth access tokens. They differ only in their key source, issuer, audience and type.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
import jwt.exceptions
from jwt import PyJWK
from jwt.algorithms import OKPAlgorithm

from server.auth.errors import TokenRejected

MAX_TOKEN_LENGTH = 8192
ASYMMETRIC_ALGORITHMS = frozenset({"EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})

# The key type of each algorithm, so a header cannot pair an algorithm with another kind of key.
_KEY_TYPE_OF_ALGORITHM = {
    "EdDSA": "OKP",
    "Ed25519": "OKP",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
}


def _decoder() -> jwt.PyJWT:
    """Build a PyJWT decoder that also accepts 'Ed25519', the fully specified name of EdDSA on Ed25519.

    PyJWT registers that algorithm under 'EdDSA' only; its per-instance registry is reached
    through the decoder's JWS object.
    """
    decoder = jwt.PyJWT()
    decoder._jws.register_algorithm("Ed25519", OKPAlgorithm())
    return decoder


_DECODER = _decoder()
# PyJWT 2.10 and later check that sub is a string; older releases have no such error.
_InvalidSubjectError: type[Exception] = getattr(jwt.exceptions, "InvalidSubjectError", type("_NeverRaised", (Exception,), {}))


class KeySource(Protocol):
    """Public keys by key id."""

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        """Return the JWK with this ``kid``, or None when the source has no such key."""
        ...


@dataclass
class StaticKeySource:
    """A fixed set of JWKs, such as the local development issuer's one key."""

    keys: Sequence[dict[str, Any]]

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        return next((key for key in self.keys if key.get("kid") == kid), None)


def normalize_url(value: str) -> str:
    """Compare issuers and audiences without a trailing slash mattering."""
    return value.rstrip("/")


_SAFE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/+=@ ")


def describe(value: object, limit: int = 64) -> str:
    """Quote a value taken from an unverified token for a rejection message.

    The message goes into a WWW-Authenticate header and the log, so only plain ASCII
    characters survive; anything else becomes '?'.
    """
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    cleaned = "".join(character if character in _SAFE_CHARACTERS else "?" for character in text[:limit])
    return f"'{cleaned}'" + ("..." if len(text) > limit else "")


def canonical_algorithm(name: str) -> str:
    """'Ed25519' is the fully specified name of EdDSA on the Ed25519 curve (RFC 9864)."""
    return "EdDSA" if name == "Ed25519" else name


def _b64_json(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenRejected("malformed token: not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise TokenRejected("malformed token: header or payload is not a JSON object")
    return value


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode header and payload WITHOUT verifying them, to pick the verifier and check shape."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected(f"token too large: more than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenRejected("malformed token: a JWT has three non-empty dot-separated parts")
    return _b64_json(parts[0]), _b64_json(parts[1])


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass
class JwtVerifier:
    """Verify JWTs of one issuer: signature, algorithm allowlist, iss, aud, exp, nbf, iat, sub."""

    name: str
    keys: KeySource
    issuer: str
    audiences: Sequence[str]
    algorithms: Sequence[str]
    leeway_seconds: int = 30
    token_types: Sequence[str] | None = None
    required_claims: Sequence[str] = ("exp", "sub")
    # Appended to "wrong audience", to tell the operator which setting names the audience.
    audience_hint: str = ""
    _issuer: str = field(init=False)

    def __post_init__(self) -> None:
        unsupported = [name for name in self.algorithms if name not in ASYMMETRIC_ALGORITHMS]
        if unsupported:
            raise ValueError(f"unsupported or symmetric JWT algorithm(s): {', '.join(unsupported)}")
        self._issuer = normalize_url(self.issuer)
        self.audiences = [normalize_url(audience) for audience in self.audiences]

    def accepts_issuer(self, issuer: object) -> bool:
        return isinstance(issuer, str) and normalize_url(issuer) == self._issuer

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the verified claims, or raise ``TokenRejected`` naming the failed check."""
        header, payload = peek(token)

        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise TokenRejected(f"algorithm {describe(algorithm)} is not allowed; allowed: {', '.join(self.algorithms)}")
        if self.token_types is not None:
            token_type = header.get("typ", "")
            if not isinstance(token_type, str) or token_type.lower() not in self.token_types:
                expected = ", ".join(repr(item) if item else "none" for item in self.token_types)
                raise TokenRejected(f"wrong token type {describe(token_type)}; expected {expected}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token header has no key id (kid)")

        jwk = await self.keys.get_key(kid)
        if jwk is None:
            raise TokenRejected(f"unknown signing key {describe(kid)}")
        key_type = jwk.get("kty")
        if _KEY_TYPE_OF_ALGORITHM.get(algorithm) != key_type:
            raise TokenRejected(f"algorithm {algorithm} does not match the {describe(key_type)} signing key")
        # A key that names its algorithm may only verify that algorithm (an RS256 key never
        # verifies a PS256 token); EdDSA and Ed25519 are two names of one algorithm here.
        key_algorithm = jwk.get("alg")
        if key_algorithm is not None and (
            not isinstance(key_algorithm, str) or canonical_algorithm(key_algorithm) != canonical_algorithm(algorithm)
        ):
            raise TokenRejected(f"algorithm {algorithm} does not match the key's algorithm {describe(key_algorithm)}")
        if algorithm == "Ed25519" and jwk.get("crv") != "Ed25519":
            raise TokenRejected(f"algorithm Ed25519 does not match the key's curve {describe(jwk.get('crv'))}")
        try:
            key = PyJWK({**jwk, "alg": canonical_algorithm(algorithm)}).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            raise TokenRejected(f"signing key {describe(kid)} is not usable") from None

        claims = self._decode(token, key, algorithm)
        self._check_claims(claims, payload)
        return claims

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        try:
            return _DECODER.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=None,
                options={
                    "require": list(self.required_claims),
                    "verify_aud": False,  # checked below, with trailing-slash normalization
                    "verify_iss": False,  # checked below, likewise
                },
                leeway=self.leeway_seconds,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token not yet valid: nbf or iat is in the future") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRejected(f"token has no {error.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("invalid signature") from None
        except _InvalidSubjectError:
            raise TokenRejected("token has no usable 'sub' claim: it must be a string") from None
        except jwt.DecodeError as error:
            # PyJWT's message names the claim ("Expiration Time claim (exp) must be an integer.")
            # and never quotes the token, but other decode errors stay generic.
            if "must be an integer" in str(error):
                raise TokenRejected("malformed token: exp, nbf and iat must be numbers") from None
            raise TokenRejected("malformed token") from None
        except jwt.InvalidTokenError as error:
            raise TokenRejected(f"invalid token: {type(error).__name__}") from None

    def _check_claims(self, claims: dict[str, Any], payload: dict[str, Any]) -> None:
        now = time.time()
        if not self.accepts_issuer(claims.get("iss")):
            raise TokenRejected(f"wrong issuer {describe(claims.get('iss'))}; expected '{self._issuer}'")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not any(
            isinstance(item, str) and normalize_url(item) in self.audiences for item in audiences
        ):
            raise TokenRejected(f"wrong audience{self.audience_hint}")
        issued_at = claims.get("iat")
        if issued_at is not None and (not isinstance(issued_at, (int, float)) or issued_at > now + self.leeway_seconds):
            raise TokenRejected("token not yet valid: nbf or iat is in the future")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 255 or "\x00" in subject:
            raise TokenRejected("token has no usable 'sub' claim")
