"""Server settings, read from the environment (and overridden by CLI options)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the server; ``TASKSTORE_`` prefixes the names unless an alias is given."""

    model_config = SettingsConfigDict(env_prefix="TASKSTORE_", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    data_dir: str | None = None
    auto_migrate: bool | None = Field(
        default=None,
        description="Upgrade the schema at start; default: on for the embedded SQLite file, off for PostgreSQL.",
    )
    log_level: str = "INFO"

    # stdio has no HTTP request: its bearer token comes from here.
    token: SecretStr | None = None

    # HTTP
    resource_url: str | None = Field(
        default=None, description="Public URL of the MCP endpoint, as clients reach it (behind a proxy)."
    )
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)

    # Local development issuer
    dev_issuer: bool | None = Field(
        default=None,
        description="Accept tokens of the local development issuer; default: on unless BETTER_AUTH_URL is set.",
    )

    # Better Auth
    better_auth_url: str | None = Field(default=None, validation_alias=AliasChoices("BETTER_AUTH_URL"))
    better_auth_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("BETTER_AUTH_SECRET"))
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["EdDSA", "ES256", "ES512", "RS256", "PS256"])
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    session_table: str = "session"
    session_tokens: bool = Field(default=True, description="Accept Better Auth session tokens (bearer plugin).")
    oauth_issuer: str | None = None
    write_scope: str = "tasks:write"
    read_scope: str = "tasks:read"
