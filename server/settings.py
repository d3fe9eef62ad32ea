"""Server settings, read from the environment (and overridden by CLI options)."""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the server; ``TASKSTORE_`` prefixes the names unless an alias is given."""

    model_config = SettingsConfigDict(env_prefix="TASKSTORE_", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    data_dir: str | None = None
    auto_migrate: bool | None = Field(
        default=None,
        description="Upgrade the schema at start; default: on for the embedded SQLite file, off for PostgreSQL.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")

    # stdio has no HTTP request: its bearer token comes from here.
    token: SecretStr | None = None

    # HTTP
    resource_url: str | None = Field(
        default=None, description="Public URL of the MCP endpoint, as clients reach it (behind a proxy)."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host headers accepted behind a proxy: comma-separated or a JSON list."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origin headers accepted: comma-separated or a JSON list."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)

    # Local development issuer
    dev_issuer: bool | None = Field(
        default=None,
        description="Accept tokens of the local development issuer; default: on unless BETTER_AUTH_URL is set.",
    )

    # Better Auth
    better_auth_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BETTER_AUTH_URL"),
        description="Base URL of the Better Auth app, such as https://app.example.com; enables Better Auth tokens.",
    )
    better_auth_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BETTER_AUTH_SECRET"),
        description="Better Auth's secret; checks the signature of signed session tokens (token.signature).",
    )
    jwks_url: str | None = Field(default=None, description="JWKS URL; default: BETTER_AUTH_URL + /api/auth/jwks.")
    jwks_cache_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Seconds fetched JWKS keys are used before the next fetch, so a removed key is rejected after this.",
    )
    jwks_refetch_interval_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Minimum seconds between two JWKS fetches, so tokens with unknown key ids cannot flood Better Auth.",
    )
    jwt_issuer: str | None = Field(default=None, description="iss of Better Auth JWTs; default: the origin of BETTER_AUTH_URL.")
    jwt_audience: str | None = Field(
        default=None, description="aud of Better Auth JWTs; default: the origin of BETTER_AUTH_URL."
    )
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["EdDSA", "ES256", "ES512", "RS256", "PS256"],
        description="JWT signature algorithms accepted (asymmetric only); EdDSA also admits the name Ed25519.",
    )
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat.")
    session_table: str = Field(default="session", description="Better Auth's session table (its modelName).")
    user_table: str = Field(default="user", description="Better Auth's user table (its modelName).")
    session_tokens: bool = Field(default=True, description="Accept Better Auth session tokens (bearer plugin).")
    session_require_signature: bool = Field(
        default=False,
        description="Accept only signed session tokens (token.signature), like bearer({ requireSignature: true }).",
    )
    oauth_issuer: str | None = Field(
        default=None, description="iss of MCP OAuth access tokens; default: BETTER_AUTH_URL + /api/auth."
    )
    write_scope: str = Field(
        default="tasks:write",
        description="Scope a token that carries scopes needs to change data; empty turns scope checks off.",
    )
    read_scope: str = "tasks:read"

    @field_validator("allowed_hosts", "allowed_origins", "jwt_algorithms", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Environment variables arrive as text: accept "a,b" as well as '["a", "b"]'.
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        allowed = {"EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
        unsupported = [name for name in value if name not in allowed]
        if unsupported or not value:
            raise ValueError(
                f"TASKSTORE_JWT_ALGORITHMS must list asymmetric algorithms among {', '.join(sorted(allowed))}"
            )
        return value

    @field_validator("session_table", "user_table")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
            raise ValueError("a table name may hold only letters, digits and underscores")
        return value
