"""Which issuers the settings enable, the defaults of issuer and audience, and the rejections."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest
from pydantic import ValidationError

from server.auth.better_auth import SessionTokenVerifier, auth_base_url, jwt_verifiers, origin_of
from server.auth.dev_issuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from server.auth.errors import TokenRejected
from server.auth.factory import AuthConfigurationError, build_verifier
from server.identity import Identity
from server.services import Services
from server.settings import Settings
from server.tools import ToolContext
from store import ConversationRepository, Database, TaskRepository, create_engine, database_config
from tests.auth.support import SigningKey, now, session_token
from tests.conftest import PostgresDatabases
from tests.support.servers import HttpServer, free_port, http_server, issue_dev_token, server_env

BETTER_AUTH = "http://127.0.0.1:3000"


def settings(**values: object) -> Settings:
    # _env_file None and explicit values only: the test's environment must not leak in.
    return Settings.model_validate(values)


@pytest.fixture(autouse=True)
def _no_auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("TASKSTORE_", "BETTER_AUTH_")):
            monkeypatch.delenv(name)


# --- which issuers are enabled --------------------------------------------------------------------


async def test_dev_issuer_is_the_default_without_better_auth(tmp_path: Path) -> None:
    verifier = build_verifier(settings(), tmp_path, ToolContext())
    token = DevIssuer.load_or_create(tmp_path).issue("alice", 600)

    access = await verifier.check(token)

    assert [item.issuer for item in verifier.jwt_verifiers] == [DEV_ISSUER]
    assert access.subject == "alice"


async def test_dev_issuer_rejected_when_better_auth_is_configured(tmp_path: Path) -> None:
    verifier = build_verifier(settings(BETTER_AUTH_URL=BETTER_AUTH), tmp_path, ToolContext())
    token = DevIssuer.load_or_create(tmp_path).issue("alice", 600)

    with pytest.raises(TokenRejected) as raised:
        await verifier.check(token)

    assert DEV_ISSUER not in [item.issuer for item in verifier.jwt_verifiers]
    assert f"untrusted issuer '{DEV_ISSUER}'" in raised.value.reason


async def test_dev_issuer_next_to_better_auth_when_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    verifier = build_verifier(settings(BETTER_AUTH_URL=BETTER_AUTH, dev_issuer=True), tmp_path, ToolContext())
    token = DevIssuer.load_or_create(tmp_path).issue("alice", 600)

    access = await verifier.check(token)

    assert access.subject == "alice"
    assert "anyone with its key can act as any user" in caplog.text


def test_no_issuer_at_all_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigurationError) as raised:
        build_verifier(settings(dev_issuer=False), tmp_path, ToolContext())
    assert "BETTER_AUTH_URL" in str(raised.value)


def test_session_tokens_can_be_turned_off(tmp_path: Path) -> None:
    with_sessions = build_verifier(settings(BETTER_AUTH_URL=BETTER_AUTH), tmp_path, ToolContext())
    without = build_verifier(settings(BETTER_AUTH_URL=BETTER_AUTH, session_tokens=False), tmp_path, ToolContext())

    assert isinstance(with_sessions.opaque, SessionTokenVerifier)
    assert without.opaque is None


# --- issuer, audience and JWKS URL ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://127.0.0.1:3000/", "http://127.0.0.1:3000"),
        ("https://Auth.Example.test:443/app/", "https://auth.example.test"),
        ("http://auth.example.test:80", "http://auth.example.test"),
        ("https://auth.example.test:8443/x", "https://auth.example.test:8443"),
        ("http://[::1]:3000/", "http://[::1]:3000"),
    ],
)
def test_origin_is_computed_like_better_auth(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_defaults_follow_better_auth() -> None:
    session_jwts, oauth = jwt_verifiers(settings(BETTER_AUTH_URL=BETTER_AUTH + "/", resource_url="http://127.0.0.1:8000/mcp"))

    assert session_jwts.issuer == BETTER_AUTH
    assert list(session_jwts.audiences) == [BETTER_AUTH]
    assert oauth.issuer == BETTER_AUTH + "/api/auth"
    assert list(oauth.audiences) == ["http://127.0.0.1:8000/mcp"]
    assert session_jwts.keys.url == BETTER_AUTH + "/api/auth/jwks"
    assert oauth.keys is session_jwts.keys


def test_overrides_replace_the_defaults() -> None:
    session_jwts, oauth = jwt_verifiers(
        settings(
            BETTER_AUTH_URL=BETTER_AUTH,
            jwt_issuer="https://issuer.example.test/",
            jwt_audience="https://audience.example.test/",
            oauth_issuer="https://issuer.example.test/auth/",
            jwks_url="https://keys.example.test/jwks",
            resource_url="https://tasks.example.test/mcp/",
        )
    )

    assert session_jwts.accepts_issuer("https://issuer.example.test")
    assert list(session_jwts.audiences) == ["https://audience.example.test"]
    assert oauth.accepts_issuer("https://issuer.example.test/auth")
    assert list(oauth.audiences) == ["https://tasks.example.test/mcp"]
    assert session_jwts.keys.url == "https://keys.example.test/jwks"


def test_auth_base_url_is_not_doubled() -> None:
    assert auth_base_url("http://127.0.0.1:3000/api/auth/") == "http://127.0.0.1:3000/api/auth"
    assert auth_base_url("http://127.0.0.1:3000/") == "http://127.0.0.1:3000/api/auth"


async def test_oauth_without_resource_url_names_setting() -> None:
    key = SigningKey.ed25519("k")
    _, oauth = jwt_verifiers(settings(BETTER_AUTH_URL=BETTER_AUTH))
    oauth.keys = _StaticKeys(key)
    claims = {"sub": "alice", "iss": BETTER_AUTH + "/api/auth", "aud": "http://127.0.0.1:8000/mcp", "exp": now() + 60}

    with pytest.raises(TokenRejected) as raised:
        await oauth.verify(key.sign(claims, headers={"typ": "at+jwt"}))

    assert "set TASKSTORE_RESOURCE_URL" in raised.value.reason


class _StaticKeys:
    def __init__(self, key: SigningKey) -> None:
        self.jwk = key.public_jwk()

    async def get_key(self, kid: str) -> dict[str, object] | None:
        return self.jwk if kid == self.jwk["kid"] else None


def test_bad_better_auth_url_is_a_configuration_error() -> None:
    with pytest.raises(AuthConfigurationError):
        jwt_verifiers(settings(BETTER_AUTH_URL="auth.example.test"))


@pytest.mark.parametrize("algorithms", [["HS256"], ["EdDSA", "none"], []])
def test_symmetric_or_unknown_algorithms_are_rejected(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError):
        settings(jwt_algorithms=algorithms)


@pytest.mark.parametrize("name", ['session"; DROP TABLE task; --', "my session", "", "1session"])
def test_table_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(ValidationError):
        settings(session_table=name)


# --- session tokens need Better Auth's PostgreSQL database ---------------------------------------


def _context(url: str) -> tuple[ToolContext, Database]:
    database = Database(create_engine(database_config(url)))
    services = Services(database, TaskRepository(database), ConversationRepository(database), database_config(url))
    return ToolContext(identity=Identity(), services=services), database


async def test_session_token_on_sqlite_is_rejected(tmp_path: Path) -> None:
    context, database = _context(f"sqlite:///{tmp_path / 'tasks.db'}")
    verifier = SessionTokenVerifier(settings(BETTER_AUTH_URL=BETTER_AUTH), context)
    try:
        with pytest.raises(TokenRejected) as raised:
            await verifier.verify(session_token())
    finally:
        await database.dispose()
    assert "session tokens need the Better Auth database" in raised.value.reason
    assert raised.value.status == 401


@pytest.mark.postgres
async def test_session_token_without_the_session_table_is_rejected(postgres_databases: PostgresDatabases) -> None:
    context, database = _context(await postgres_databases.create("taskstore_nosession"))
    verifier = SessionTokenVerifier(settings(BETTER_AUTH_URL=BETTER_AUTH), context)
    try:
        with pytest.raises(TokenRejected) as raised:
            await verifier.verify(session_token())
    finally:
        await database.dispose()
    assert "session tokens need the Better Auth database" in raised.value.reason
    assert "'session'" in raised.value.reason


async def test_session_token_before_services_exist_is_a_503() -> None:
    verifier = SessionTokenVerifier(settings(BETTER_AUTH_URL=BETTER_AUTH), ToolContext())
    with pytest.raises(TokenRejected) as raised:
        await verifier.verify(session_token())
    assert raised.value.status == 503


# --- the HTTP server with the development issuer alone --------------------------------------------


@pytest.fixture(scope="module")
def dev_only_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    data_dir = tmp_path_factory.mktemp("dev-only")
    with http_server(data_dir, None) as server:
        yield server


async def test_dev_issuer_alone_publishes_no_authorization_server(dev_only_server: HttpServer) -> None:
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        metadata = await client.get(dev_only_server.base_url + "/.well-known/oauth-protected-resource/mcp")
        rejected = await client.post(
            dev_only_server.url,
            headers={"accept": "application/json, text/event-stream", "content-type": "application/json"},
            content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
    assert metadata.status_code == 404
    assert rejected.status_code == 401
    assert rejected.headers["www-authenticate"].startswith("Bearer ")
    assert "resource_metadata" not in rejected.headers["www-authenticate"]


async def test_dev_issuer_token_works_over_http(dev_only_server: HttpServer) -> None:
    token = issue_dev_token(dev_only_server.log_path.parent, "dev-user")
    async with dev_only_server.client(token) as client:
        result = await client.call_tool("list_tasks", {})
    assert not result.is_error


# --- stdio does not start with a rejected token ------------------------------------------------


def _serve_stdio(data_dir: Path, token: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "serve"],
        env=server_env(data_dir, None, TASKSTORE_TOKEN=token, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_stdio_rejects_an_expired_token(tmp_path: Path) -> None:
    issuer = DevIssuer.load_or_create(tmp_path)
    claims = {"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "alice", "iat": now() - 7200, "exp": now() - 3600}
    token = jwt.encode(claims, issuer.private_key, algorithm="EdDSA", headers={"kid": issuer.public_jwk()["kid"]})

    result = _serve_stdio(tmp_path, token)

    assert result.returncode == 1
    assert "TASKSTORE_TOKEN was rejected: token expired; renew the token" in result.stderr
    assert token not in result.stderr
    assert result.stdout == ""


def test_stdio_rejects_dev_token_under_better_auth(tmp_path: Path) -> None:
    token = DevIssuer.load_or_create(tmp_path).issue("alice", 600)

    result = _serve_stdio(tmp_path, token, BETTER_AUTH_URL=f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 1
    assert f"TASKSTORE_TOKEN was rejected: untrusted issuer '{DEV_ISSUER}'" in result.stderr
    assert token not in result.stderr


def test_stdio_says_when_the_keys_cannot_be_fetched(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    key = SigningKey.ed25519("k")
    token = key.sign({"sub": "alice", "iss": base, "aud": base, "iat": now(), "exp": now() + 600})

    result = _serve_stdio(tmp_path, token, BETTER_AUTH_URL=base)

    assert result.returncode == 1
    assert "cannot check TASKSTORE_TOKEN now" in result.stderr
    assert "signing keys are unavailable" in result.stderr
    assert token not in result.stderr


def test_stdio_rejects_a_session_token_on_sqlite(tmp_path: Path) -> None:
    token = session_token()

    result = _serve_stdio(tmp_path, token, BETTER_AUTH_URL=BETTER_AUTH)

    assert result.returncode == 1
    assert "session tokens need the Better Auth database" in result.stderr
    assert token not in result.stderr


def test_serve_help_names_the_token_settings() -> None:
    from server.cli import build_parser

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = serve.format_help()

    assert "TASKSTORE_TOKEN" in text
    assert "BETTER_AUTH_URL" in text
    assert "docs/auth.md" in text
