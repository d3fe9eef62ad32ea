"""The server's token verifier: picks the verifier a token belongs to and builds the AccessToken."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from mcp.server.auth.provider import AccessToken, TokenVerifier

from server.auth.errors import TokenRejected
from server.auth.jwt import MAX_TOKEN_LENGTH, JwtVerifier, looks_like_jwt, peek

logger = logging.getLogger(__name__)

# The HTTP guard verifies each request's token first; the SDK's bearer backend then verifies again
# for the same token within the same request and receives this result instead of a second check.
_verified_in_request: ContextVar[tuple[str, AccessToken] | None] = ContextVar("verified_in_request", default=None)


def remember_verified(token: str, access_token: AccessToken) -> None:
    _verified_in_request.set((token, access_token))


class OpaqueTokenVerifier(Protocol):
    """Verifies tokens that are not JWTs (Better Auth session tokens)."""

    async def verify(self, token: str) -> AccessToken: ...


def _scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope", claims.get("scp"))
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [item for item in scope if isinstance(item, str)]
    return []


class ServerTokenVerifier(TokenVerifier):
    """Verify a bearer token with the JWT verifier of its issuer, or the opaque-token verifier."""

    def __init__(self, jwt_verifiers: Sequence[JwtVerifier], opaque: OpaqueTokenVerifier | None = None) -> None:
        self.jwt_verifiers = list(jwt_verifiers)
        self.opaque = opaque

    async def check(self, token: str) -> AccessToken:
        """Return the verified token, or raise ``TokenRejected`` naming the failed check."""
        token = token.strip()
        if not token:
            raise TokenRejected("empty bearer token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected(f"token too large: more than {MAX_TOKEN_LENGTH} characters")
        if not looks_like_jwt(token):
            if self.opaque is None:
                raise TokenRejected("malformed token: expected a JWT")
            return await self.opaque.verify(token)

        _, payload = peek(token)
        issuer = payload.get("iss")
        verifier = next((item for item in self.jwt_verifiers if item.accepts_issuer(issuer)), None)
        if verifier is None:
            raise TokenRejected("untrusted issuer")
        claims = await verifier.verify(token)
        client_id = claims.get("client_id") or claims.get("azp") or verifier.name
        return AccessToken(
            token=token,
            client_id=str(client_id),
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            subject=claims["sub"],
            resource=None,
            claims={key: claims[key] for key in ("iss", "aud", "jti", "typ") if key in claims},
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        remembered = _verified_in_request.get()
        if remembered is not None and remembered[0] == token:
            return remembered[1]
        try:
            return await self.check(token)
        except TokenRejected as rejection:
            logger.info("bearer token rejected: %s", rejection.reason)
            return None
