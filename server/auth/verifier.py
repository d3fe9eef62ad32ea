"""The server's token verifier: picks the verifier a token belongs to and builds the AccessToken."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from mcp.server.auth.provider import AccessToken, TokenVerifier

from server.auth.errors import TokenRejected
from server.auth.jwt import MAX_TOKEN_LENGTH, JwtVerifier, describe, looks_like_jwt, peek

logger = logging.getLogger(__name__)

# The HTTP guard verifies each request's token first. The SDK's bearer backend then calls
# verify_token with the same token in the same request and receives this result, so no token is
# checked twice.
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

        header, payload = peek(token)
        verifier = self._verifier_for(header, payload)
        claims = await verifier.verify(token)
        client_id = claims.get("client_id") or claims.get("azp") or verifier.name
        return AccessToken(
            token=token,
            client_id=str(client_id),
            scopes=_scopes(claims),
            # The leeway is part of the policy: the SDK and the tools, which compare expires_at
            # with the clock, accept the token exactly as long as the verifier did.
            expires_at=int(claims["exp"]) + verifier.leeway_seconds,
            subject=claims["sub"],
            resource=None,
            claims={key: claims[key] for key in ("iss", "aud", "jti", "typ") if key in claims},
        )

    def _verifier_for(self, header: dict[str, Any], payload: dict[str, Any]) -> JwtVerifier:
        """Pick the verifier by the token's issuer; when two share an issuer, by the token type."""
        issuer = payload.get("iss")
        candidates = [item for item in self.jwt_verifiers if item.accepts_issuer(issuer)]
        if not candidates:
            trusted = ", ".join(f"'{item.issuer}'" for item in self.jwt_verifiers)
            raise TokenRejected(f"untrusted issuer {describe(issuer)}; this server accepts {trusted}")
        token_type = header.get("typ", "")
        token_type = token_type.lower() if isinstance(token_type, str) else None
        for candidate in candidates:
            if candidate.token_types is not None and token_type in candidate.token_types:
                return candidate
        return next((item for item in candidates if item.token_types is None), candidates[0])

    async def verify_token(self, token: str) -> AccessToken | None:
        remembered = _verified_in_request.get()
        if remembered is not None and remembered[0] == token:
            return remembered[1]
        try:
            return await self.check(token)
        except TokenRejected as rejection:
            logger.info("bearer token rejected: %s", rejection.reason)
            return None
