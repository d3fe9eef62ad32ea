"""The local development issuer: an Ed25519 key in the data directory that signs test tokens.

It lets a new user try the server without an identity provider:
``taskstore token issue --user alice`` prints a JWT that the server verifies through the same
JWT path as Better Auth tokens. It is not an identity provider: anyone who can read the key file
can act as any user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.auth.jwt import JwtVerifier, StaticKeySource

logger = logging.getLogger(__name__)

DEV_ISSUER = "urn:taskstore:dev-issuer"
DEV_AUDIENCE = "urn:taskstore:mcp"
KEY_FILE = "dev-issuer-ed25519.pem"
DEFAULT_SCOPES = ("tasks:read", "tasks:write")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class DevIssuer:
    private_key: Ed25519PrivateKey
    key_path: Path

    @classmethod
    def load_or_create(cls, data_dir: Path) -> DevIssuer:
        """Load the key pair, creating it (readable by its owner only) on first use."""
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # O_EXCL: two processes starting at once must not overwrite each other's key.
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return cls.load_or_create(data_dir)
            with os.fdopen(descriptor, "wb") as file:
                file.write(pem)
            logger.info("created development issuer key %s", path)
            return cls(key, path)

        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not contain an Ed25519 private key")
        return cls(key, path)

    def public_jwk(self) -> dict[str, Any]:
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = _b64url(raw)
        # RFC 7638 thumbprint as the key id.
        thumbprint = _b64url(hashlib.sha256(json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":")).encode()).digest())
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint, "alg": "EdDSA", "use": "sig"}

    def issue(self, user_id: str, ttl_seconds: int, scopes: tuple[str, ...] = DEFAULT_SCOPES) -> str:
        """Sign a token for ``user_id`` that expires ``ttl_seconds`` from now."""
        now = int(time.time())
        claims = {
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": user_id,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "scope": " ".join(scopes),
        }
        headers = {"kid": self.public_jwk()["kid"], "typ": "JWT"}
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers=headers)

    def verifier(self, leeway_seconds: int = 30) -> JwtVerifier:
        return JwtVerifier(
            name="development issuer",
            keys=StaticKeySource([self.public_jwk()]),
            issuer=DEV_ISSUER,
            audiences=[DEV_AUDIENCE],
            algorithms=["EdDSA"],
            leeway_seconds=leeway_seconds,
        )
