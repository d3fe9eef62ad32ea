"""Build the server's token verifier from the settings."""

from __future__ import annotations

import logging
from pathlib import Path

from server.auth.dev_issuer import DevIssuer
from server.auth.jwt import JwtVerifier
from server.auth.verifier import OpaqueTokenVerifier, ServerTokenVerifier
from server.settings import Settings
from server.tools import ToolContext

logger = logging.getLogger(__name__)


class AuthConfigurationError(Exception):
    """The authentication settings cannot work together."""


def dev_issuer_enabled(settings: Settings) -> bool:
    if settings.dev_issuer is not None:
        return settings.dev_issuer
    return settings.better_auth_url is None


def build_verifier(settings: Settings, data_dir: Path, context: ToolContext) -> ServerTokenVerifier:
    """Combine the verifiers the settings enable: the development issuer and Better Auth's."""
    jwt_verifiers: list[JwtVerifier] = []
    opaque: OpaqueTokenVerifier | None = None

    if settings.better_auth_url:
        from server.auth import better_auth

        jwt_verifiers.extend(better_auth.jwt_verifiers(settings))
        if settings.session_tokens:
            opaque = better_auth.SessionTokenVerifier(settings, context)

    if dev_issuer_enabled(settings):
        if settings.better_auth_url:
            logger.warning("the development issuer is enabled next to Better Auth; anyone with its key can act as any user")
        jwt_verifiers.append(DevIssuer.load_or_create(data_dir).verifier(settings.jwt_leeway_seconds))

    if not jwt_verifiers and opaque is None:
        raise AuthConfigurationError(
            "no token issuer is configured: set BETTER_AUTH_URL, or TASKSTORE_DEV_ISSUER=true for local tokens"
        )
    return ServerTokenVerifier(jwt_verifiers, opaque)
