"""Better Auth tokens: jwt-plugin JWTs, MCP OAuth access tokens and bearer-plugin session tokens.

* JWTs of the ``jwt`` plugin (``GET /api/auth/token``): signed by a key of the JWKS at
  ``BETTER_AUTH_URL/api/auth/jwks``; ``iss`` and ``aud`` are the origin of ``BETTER_AUTH_URL``.
* OAuth access tokens of ``@better-auth/mcp``: the same keys, ``typ: at+jwt``, ``iss`` is
  ``BETTER_AUTH_URL/api/auth`` and ``aud`` is this server's resource URL.
* Session tokens of the ``bearer`` plugin: the value of ``session.token``, raw or signed as
  ``token.base64(HMAC-SHA256(BETTER_AUTH_SECRET, token))``, looked up in Better Auth's own
  ``session`` table, so the server must use Better Auth's PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
from mcp.server.auth.provider import AccessToken
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError, SQLAlchemyError

from server.auth.errors import TokenRejected
from server.auth.jwt import ASYMMETRIC_ALGORITHMS, JwtVerifier
from server.settings import Settings
from server.tools import ToolContext

logger = logging.getLogger(__name__)

BASE_PATH = "/api/auth"
JWKS_PATH = "/jwks"
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_MAX_BYTES = 256 * 1024
JWKS_MAX_KEYS = 100
OAUTH_TOKEN_TYPE = "at+jwt"
# Better Auth's session JWTs carry no typ; anything but 'JWT' would be another kind of token.
SESSION_JWT_TYPES = ("", "jwt")

# Better Auth makes session tokens of 32 alphanumerics; a custom generator may use - and _.
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,255}")
_SIGNATURE_LENGTH = 44  # standard padded base64 of a 32-byte HMAC-SHA256
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_KEY_TYPES = ("OKP", "EC", "RSA")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Unavailable(Exception):
    """The JWKS request failed; the message names the URL and the failure, never a token."""


# --- URLs ----------------------------------------------------------------------------------------


def origin_of(url: str) -> str:
    """Return the URL's origin as Better Auth computes it (``new URL(url).origin``): no path, no default port."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{suffix}"


def auth_base_url(better_auth_url: str) -> str:
    """``BETTER_AUTH_URL`` plus Better Auth's base path, unless the URL already ends with it."""
    base = better_auth_url.strip().rstrip("/")
    return base if base.endswith(BASE_PATH) else base + BASE_PATH


def _redacted(url: str) -> str:
    """Return the URL without user:password, for logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# --- JWKS ----------------------------------------------------------------------------------------


def parse_jwks(document: object, url: str) -> dict[str, dict[str, Any]]:
    """Return the usable public signing keys of a JWKS document by ``kid``.

    Keys without a kid, of another type than OKP, EC or RSA, or meant for encryption
    (``use`` other than ``sig``) are skipped. Private members are dropped: a JWKS that
    publishes them is misconfigured, and only the public half is needed to verify.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _Unavailable(f"JWKS {_redacted(url)} is not a JSON object with a 'keys' list")
    keys: dict[str, dict[str, Any]] = {}
    for entry in document["keys"][:JWKS_MAX_KEYS]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            continue
        if entry.get("kty") not in _KEY_TYPES or entry.get("use", "sig") != "sig":
            continue
        algorithm = entry.get("alg")
        if algorithm is not None and (not isinstance(algorithm, str) or algorithm not in ASYMMETRIC_ALGORITHMS):
            continue
        # An OKP key may name its algorithm 'EdDSA' (Better Auth) or 'Ed25519' (RFC 9864);
        # the verifier treats both as EdDSA.
        keys[kid] = {name: value for name, value in entry.items() if name not in _PRIVATE_JWK_MEMBERS}
    return keys


class JwksKeySource:
    """The keys of a JWKS URL, fetched without blocking the event loop and cached.

    * The first ``get_key`` fetches the set; after ``cache_seconds`` the next call fetches it
      again, so a key removed from the JWKS stops verifying tokens after at most that long.
    * A ``kid`` not in the cache triggers one refetch (a key added by rotation), but no
      fetch of any kind happens within ``refetch_interval_seconds`` of the previous attempt,
      so a stream of tokens with made-up key ids cannot flood the issuer.
    * When a fetch fails the last good keys stay in use and the failure is logged.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        refetch_interval_seconds: float = 10.0,
        timeout_seconds: float = JWKS_TIMEOUT_SECONDS,
        max_bytes: int = JWKS_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.refetch_interval_seconds = refetch_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes
        self._clock = clock
        self._transport = transport
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failure: str | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        if self._fetched_at is None or self._clock() - self._fetched_at >= self.cache_seconds:
            await self._refresh("cache expired" if self._fetched_at is not None else "first use")
        key = self._keys.get(kid)
        if key is None:
            await self._refresh("unknown key id")
            key = self._keys.get(kid)
        if key is None and self._fetched_at is None:
            raise TokenRejected(
                f"cannot check the token: the signing keys are unavailable ({self._last_failure})",
                status=503,
                error="temporarily_unavailable",
            )
        return key

    async def _refresh(self, reason: str) -> None:
        async with self._lock:
            now = self._clock()
            # Also lets the requests that waited on the lock use the fetch that just happened.
            if self._attempted_at is not None and now - self._attempted_at < self.refetch_interval_seconds:
                return
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except _Unavailable as failure:
                self._last_failure = str(failure)
                kept = f"keeping {len(self._keys)} cached key(s)" if self._fetched_at is not None else "no keys cached"
                logger.warning("JWKS refresh (%s) failed: %s; %s", reason, failure, kept)
                return
            self._log_changes(keys)
            self._keys = keys
            self._fetched_at = self._clock()
            self._last_failure = None

    def _log_changes(self, keys: Mapping[str, Any]) -> None:
        added = sorted(set(keys) - set(self._keys))
        removed = sorted(set(self._keys) - set(keys))
        if added or removed or self._fetched_at is None:
            logger.info(
                "JWKS %s: %d key(s); added %s; removed %s",
                _redacted(self.url), len(keys), ", ".join(added) or "none", ", ".join(removed) or "none",
            )

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        self.fetch_count += 1
        url = _redacted(self.url)
        try:
            async with httpx2.AsyncClient(
                timeout=self.timeout_seconds, follow_redirects=False, transport=self._transport
            ) as client:
                async with client.stream("GET", self.url, headers={"accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise _Unavailable(f"GET {url} returned HTTP {response.status_code}")
                    declared = response.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                        raise _Unavailable(f"GET {url}: response larger than {self.max_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            raise _Unavailable(f"GET {url}: response larger than {self.max_bytes} bytes")
        except httpx2.TimeoutException:
            raise _Unavailable(f"GET {url} timed out after {self.timeout_seconds:g} s") from None
        except httpx2.HTTPError as error:
            raise _Unavailable(f"GET {url} failed: {type(error).__name__}") from None
        try:
            document = json.loads(bytes(body))
        except ValueError:
            raise _Unavailable(f"GET {url}: the response is not JSON") from None
        return parse_jwks(document, self.url)


# --- JWT verifiers -------------------------------------------------------------------------------


def _algorithms(settings: Settings) -> list[str]:
    """Return the allowlist from the settings, with EdDSA and Ed25519 accepted for each other."""
    allowed = list(dict.fromkeys(settings.jwt_algorithms))
    if "EdDSA" in allowed and "Ed25519" not in allowed:
        allowed.append("Ed25519")
    if "Ed25519" in allowed and "EdDSA" not in allowed:
        allowed.append("EdDSA")
    return allowed


def key_source(settings: Settings) -> JwksKeySource:
    assert settings.better_auth_url
    url = settings.jwks_url or auth_base_url(settings.better_auth_url) + JWKS_PATH
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the JWKS URL {_redacted(url)!r} is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the JWKS URL %s is plain http: anyone on the path can swap the signing keys", _redacted(url))
    return JwksKeySource(
        url,
        cache_seconds=settings.jwks_cache_seconds,
        refetch_interval_seconds=settings.jwks_refetch_interval_seconds,
    )


def jwt_verifiers(settings: Settings) -> list[JwtVerifier]:
    """Build the verifiers of Better Auth's session JWTs and, when an audience is known, its OAuth access tokens."""
    from server.auth.factory import AuthConfigurationError

    assert settings.better_auth_url
    try:
        origin = origin_of(settings.better_auth_url)
        keys = key_source(settings)
    except ValueError as error:
        raise AuthConfigurationError(f"BETTER_AUTH_URL or TASKSTORE_JWKS_URL: {error}") from None
    algorithms = _algorithms(settings)
    leeway = settings.jwt_leeway_seconds

    session_jwts = JwtVerifier(
        name="better-auth-jwt",
        keys=keys,
        issuer=settings.jwt_issuer or origin,
        audiences=[settings.jwt_audience or origin],
        algorithms=algorithms,
        leeway_seconds=leeway,
        token_types=SESSION_JWT_TYPES,
        audience_hint=" (set TASKSTORE_JWT_AUDIENCE when Better Auth's jwt plugin uses another audience)",
    )
    resource = settings.resource_url
    oauth_tokens = JwtVerifier(
        name="better-auth-oauth",
        keys=keys,
        issuer=settings.oauth_issuer or auth_base_url(settings.better_auth_url),
        audiences=[resource] if resource else [],
        algorithms=algorithms,
        leeway_seconds=leeway,
        token_types=(OAUTH_TOKEN_TYPE,),
        audience_hint=(
            f": the token is not for this server's resource {resource}"
            if resource
            else ": set TASKSTORE_RESOURCE_URL to the MCP resource the OAuth access tokens are issued for"
        ),
    )
    logger.info(
        "Better Auth JWTs: keys from %s, issuer %s; OAuth access tokens: issuer %s, audience %s",
        _redacted(keys.url), session_jwts.issuer, oauth_tokens.issuer, resource or "(none: TASKSTORE_RESOURCE_URL unset)",
    )
    return [session_jwts, oauth_tokens]


# --- session tokens ------------------------------------------------------------------------------


def session_signature(token: str, secret: str) -> str:
    """Compute the signature Better Auth appends: standard padded base64 of HMAC-SHA256(secret, token)."""
    return base64.b64encode(hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()).decode()


def parse_session_token(value: str, secret: str | None, *, require_signature: bool = False) -> str:
    """Return the raw session token of ``value``, checking the signature of the signed form.

    ``value`` is the raw token, ``token.signature``, or that URL-encoded (the cookie form).
    Without a secret the signature cannot be checked, so the signed form is rejected rather
    than accepted unchecked.
    """
    if "%" in value:
        value = urllib.parse.unquote(value)
    token, dot, signature = value.rpartition(".")
    if not dot:
        if require_signature:
            raise TokenRejected("unsigned session token: this server accepts only the signed form token.signature")
        if not _SESSION_TOKEN.fullmatch(value):
            raise TokenRejected("malformed token: neither a JWT nor a Better Auth session token")
        return value
    if not _SESSION_TOKEN.fullmatch(token):
        raise TokenRejected("malformed token: neither a JWT nor a Better Auth session token")
    if len(signature) != _SIGNATURE_LENGTH or not signature.endswith("="):
        raise TokenRejected("malformed session token signature: expected 44 characters of padded base64")
    if not secret:
        raise TokenRejected(
            "cannot check the session token's signature: BETTER_AUTH_SECRET is not set on this server"
        )
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed session token signature: not base64") from None
    expected = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise TokenRejected("invalid session token signature (signed with another BETTER_AUTH_SECRET?)")
    return token


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"{name!r} is not a plain SQL table name")
    return f'"{name}"'


class SessionTokenVerifier:
    """Verify bearer-plugin session tokens against Better Auth's ``session`` and ``user`` tables.

    One query per request, on the server's own engine: the session row, its expiry, and
    whether its user still exists. No cache: a signed-out session is rejected at once.
    """

    def __init__(self, settings: Settings, context: ToolContext) -> None:
        self.context = context
        self.secret = settings.better_auth_secret.get_secret_value() if settings.better_auth_secret else None
        self.require_signature = settings.session_require_signature
        self.session_table = settings.session_table
        self.user_table = settings.user_table
        self.issuer = origin_of(settings.better_auth_url) if settings.better_auth_url else "better-auth"
        session, user = _identifier(settings.session_table), _identifier(settings.user_table)
        self._query = text(
            f'SELECT s."userId" AS user_id, s."expiresAt" AS expires_at, u."id" IS NOT NULL AS user_exists '
            f'FROM {session} AS s LEFT JOIN {user} AS u ON u."id" = s."userId" '
            f'WHERE s."token" = :token'
        )
        if self.secret is None:
            logger.info("BETTER_AUTH_SECRET is not set: only raw session tokens are accepted, not signed ones")

    async def verify(self, token: str) -> AccessToken:
        raw = parse_session_token(token, self.secret, require_signature=self.require_signature)
        services = self.context.services
        if services is None:
            raise TokenRejected("the server is still starting; retry in a moment", status=503, error="temporarily_unavailable")
        database = services.database
        if not database.is_postgres:
            raise TokenRejected(
                "session tokens need the Better Auth database: this server stores its data in SQLite; "
                "point DATABASE_URL at Better Auth's PostgreSQL database, or send a JWT"
            )
        try:
            async with database.engine.connect() as connection:
                row = (await connection.execute(self._query, {"token": raw})).first()
        except ProgrammingError:
            raise TokenRejected(
                f"session tokens need the Better Auth database: no table {self.session_table!r} "
                f"with a {self.user_table!r} table in {services.config.describe()}"
            ) from None
        except (SQLAlchemyError, DBAPIError, OSError, TimeoutError) as error:
            logger.warning("session token lookup failed: %s", type(error).__name__)
            raise TokenRejected(
                "cannot check the session token: the database is unavailable", status=503, error="temporarily_unavailable"
            ) from None

        if row is None:
            raise TokenRejected(
                "unknown session token: signed out, removed, or an opaque OAuth access token "
                "(request OAuth tokens with the resource parameter to get a JWT)"
            )
        expires_at = row.expires_at
        if isinstance(expires_at, datetime) and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if not isinstance(expires_at, datetime) or expires_at <= datetime.now(UTC):
            raise TokenRejected("session expired; sign in again")
        if not row.user_exists:
            raise TokenRejected("the session's user no longer exists")
        return AccessToken(
            token=token,
            client_id="better-auth-session",
            scopes=[],
            expires_at=int(expires_at.timestamp()),
            subject=str(row.user_id),
            resource=None,
            claims={"iss": self.issuer},
        )
