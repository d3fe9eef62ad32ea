"""Test keys, a JWKS server on 127.0.0.1, hand-made JWTs and Better Auth-shaped tables."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy.engine import make_url

JWKS_PATH = "/api/auth/jwks"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass
class SigningKey:
    """A private key, its algorithm and its public JWK."""

    kid: str
    algorithm: str
    private_key: Any
    jwk_alg: str | None = None

    @classmethod
    def ed25519(cls, kid: str, jwk_alg: str | None = "EdDSA") -> SigningKey:
        return cls(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate(), jwk_alg)

    @classmethod
    def ec(cls, kid: str, curve: ec.EllipticCurve, algorithm: str) -> SigningKey:
        return cls(kid, algorithm, ec.generate_private_key(curve), algorithm)

    @classmethod
    def rsa(cls, kid: str, algorithm: str = "RS256") -> SigningKey:
        return cls(kid, algorithm, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm)

    def public_jwk(self) -> dict[str, Any]:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            family: Any = jwt.algorithms.OKPAlgorithm
        elif isinstance(self.private_key, rsa.RSAPrivateKey):
            family = jwt.algorithms.RSAAlgorithm
        else:
            family = jwt.algorithms.ECAlgorithm
        jwk = json.loads(family.to_jwk(self.private_key.public_key()))
        jwk["kid"] = self.kid
        if self.jwk_alg:
            jwk["alg"] = self.jwk_alg
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None, algorithm: str | None = None) -> str:
        """A JWT signed by this key; ``headers`` add to or replace the kid, and typ "" removes typ."""
        header: dict[str, Any] = {"kid": self.kid, **(headers or {})}
        if header["kid"] is None:
            del header["kid"]
        return jwt.encode(claims, self.private_key, algorithm=algorithm or self.algorithm, headers=header)


def raw_jwt(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64url_json(header)}.{b64url_json(claims)}.{b64url(signature)}"


def ed25519_named_jwt(key: SigningKey, claims: dict[str, Any]) -> str:
    """A JWT whose header names the algorithm 'Ed25519' (RFC 9864), which PyJWT does not sign."""
    signing_input = f"{b64url_json({'alg': 'Ed25519', 'kid': key.kid})}.{b64url_json(claims)}"
    return f"{signing_input}.{b64url(key.private_key.sign(signing_input.encode()))}"


def hs256_jwt(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT whose signature is HMAC-SHA256 under ``secret`` (here: a public key's bytes)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def sign_session(token: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    return f"{token}.{base64.b64encode(digest).decode()}"


def session_token() -> str:
    """32 alphanumerics, as Better Auth makes them."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(32))


# --- JWKS server ---------------------------------------------------------------------------------


@dataclass
class JwksServer:
    """Serves ``{"keys": [...]}`` at /api/auth/jwks on 127.0.0.1; keys and failures set by the test."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None
    requests: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.base_url + JWKS_PATH

    def set_keys(self, *keys: SigningKey) -> None:
        with self._lock:
            self.keys = [key.public_jwk() for key in keys]

    def request_count(self) -> int:
        with self._lock:
            return self.requests

    def _respond(self) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
            if self.fail_status is not None:
                return self.fail_status, b'{"error": "down"}'
            return 200, json.dumps({"keys": self.keys}).encode()


@contextmanager
def running_jwks_server(server: JwksServer) -> Iterator[JwksServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path.split("?")[0] != JWKS_PATH:
                self.send_error(404)
                return
            status, body = server._respond()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# --- Better Auth-shaped tables -------------------------------------------------------------------

# The columns Better Auth 1.7 creates on PostgreSQL (tests/node/FINDINGS.md). The foreign key
# from session to user is left out on purpose. Better Auth's own schema cascades a user's
# deletion to its sessions, so only without that key can a test check that the server also
# rejects a session whose user row is gone.
BETTER_AUTH_TABLES = [
    '''CREATE TABLE "user" (
        "id" text PRIMARY KEY, "name" text NOT NULL, "email" text NOT NULL UNIQUE,
        "emailVerified" boolean NOT NULL DEFAULT false, "image" text,
        "createdAt" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP)''',
    '''CREATE TABLE "session" (
        "id" text PRIMARY KEY, "expiresAt" timestamptz NOT NULL, "token" text NOT NULL UNIQUE,
        "createdAt" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "ipAddress" text, "userAgent" text, "userId" text NOT NULL)''',
]


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_better_auth_tables(url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for statement in BETTER_AUTH_TABLES:
            await connection.execute(statement)
    finally:
        await connection.close()


async def add_user(url: str, user_id: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(
            'INSERT INTO "user" ("id", "name", "email") VALUES ($1, $2, $3)', user_id, user_id, f"{user_id}@example.test"
        )
    finally:
        await connection.close()


async def add_session(url: str, user_id: str, token: str, expires_in_seconds: float) -> None:
    from datetime import UTC, datetime, timedelta

    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(
            'INSERT INTO "session" ("id", "expiresAt", "token", "userId") VALUES ($1, $2, $3, $4)',
            secrets.token_hex(8),
            datetime.now(UTC) + timedelta(seconds=expires_in_seconds),
            token,
            user_id,
        )
    finally:
        await connection.close()


async def count_rows(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Row counts as the superuser, whom row-level security does not filter."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {table: await connection.fetchval(f'SELECT count(*) FROM "{table}"') for table in tables}
    finally:
        await connection.close()


def now() -> int:
    return int(time.time())
