"""Hostile and broken bearer tokens sent through the real streamable HTTP transport.

One server subprocess serves the whole module. It trusts Better Auth at a JWKS server this
module runs on 127.0.0.1 with keys it generates, and uses a fresh PostgreSQL database that
contains its own tables (migrated at start) plus Better Auth-shaped ``user`` and ``session``
tables. Every case calls ``create_task`` and must get 401 (403 for a missing scope) with a
``WWW-Authenticate`` header, a body and a log that never contain the token, and no change to
any table.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.auth.support import (
    JwksServer,
    SigningKey,
    add_session,
    add_user,
    b64url_json,
    count_rows,
    create_better_auth_tables,
    ed25519_named_jwt,
    hs256_jwt,
    now,
    raw_jwt,
    running_jwks_server,
    session_token,
    sign_session,
)
from tests.conftest import PostgresDatabases
from tests.support.servers import HttpServer, http_server, issue_dev_token

pytestmark = pytest.mark.postgres

SECRET = "attack-table-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
TABLES = ("task", "conversation", "message", "session", "user")
LEEWAY = 30
USER = "user-attack-alice"
GONE_USER = "user-attack-deleted"


@dataclass
class World:
    """Everything a case needs to build its request."""

    server: HttpServer
    database_url: str
    origin: str
    keys: dict[str, SigningKey]
    attacker: SigningKey
    sessions: dict[str, str]
    dev_token: str
    counts_changed_by_controls: int = 0
    sent: list[str] = field(default_factory=list)

    @property
    def resource(self) -> str:
        return self.server.url

    @property
    def oauth_issuer(self) -> str:
        return self.origin + "/api/auth"

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Claims of a valid Better Auth session JWT; a change to None removes the claim."""
        issued = now()
        claims: dict[str, Any] = {"sub": USER, "iss": self.origin, "aud": self.origin, "iat": issued, "exp": issued + 600}
        claims.update(changes)
        return {key: value for key, value in claims.items() if value is not None}

    def oauth_claims(self, **changes: Any) -> dict[str, Any]:
        """Claims of a valid MCP OAuth access token for this server, with the write scope."""
        base = {"iss": self.oauth_issuer, "aud": self.resource, "scope": "tasks:read tasks:write", "client_id": "client-1"}
        return self.claims(**{**base, **changes})

    def jwt(self, key: str = "ed", headers: dict[str, Any] | None = None, **changes: Any) -> str:
        return self.keys[key].sign(self.claims(**changes), headers=headers)

    def oauth(self, key: str = "ed", headers: dict[str, Any] | None = None, **changes: Any) -> str:
        return self.keys[key].sign(self.oauth_claims(**changes), headers={"typ": "at+jwt", **(headers or {})})


@dataclass(frozen=True)
class Case:
    id: str
    note: str
    # Returns the Authorization header value (None: no header) and the token inside it.
    request: Callable[[World], tuple[str | None, str]]
    reason: str
    status: int = 401
    tool: str = "create_task"


def bearer(make: Callable[[World], str]) -> Callable[[World], tuple[str | None, str]]:
    def request(world: World) -> tuple[str | None, str]:
        token = make(world)
        return f"Bearer {token}", token

    return request


def _tamper_payload(world: World) -> str:
    header, _, signature = world.jwt().split(".")
    return f"{header}.{b64url_json(world.claims(sub='user-attack-mallory'))}.{signature}"


def _tamper_signature(world: World) -> str:
    header, payload, signature = world.jwt().split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1:]}"


def _hs256_with_public_key(world: World) -> str:
    return hs256_jwt({"alg": "HS256", "kid": "ed", "typ": "JWT"}, world.claims(), world.keys["ed"].public_pem())


def _rsa_header_on_okp_key(world: World) -> str:
    return world.keys["rsa"].sign(world.claims(), headers={"kid": "ed"})


def _ps256_on_rs256_key(world: World) -> str:
    return world.keys["rsa"].sign(world.claims(), algorithm="PS256")


def _embedded_jwk(world: World) -> str:
    jwk = world.attacker.public_jwk()
    return world.attacker.sign(world.claims(), headers={"jwk": jwk, "jku": world.origin + "/evil-jwks"})


def _wrong_session_signature(world: World) -> str:
    return sign_session(world.sessions["valid"], "another-secret-0123456789-abcdefghijklmnopqrstuvwxyz")


def _dev_token(world: World) -> str:
    return world.dev_token


CASES = [
    # --- transport and header ---
    Case("no-authorization", "no Authorization header", lambda w: (None, ""), "missing bearer token"),
    Case("empty-bearer", "scheme with nothing after it", lambda w: ("Bearer", ""), "empty bearer token"),
    Case("basic-scheme", "Basic credentials instead of a bearer token",
         lambda w: ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="), "missing bearer token"),
    Case("oversized", "9000 characters", bearer(lambda w: "a" * 9000), "token too large"),
    Case("not-base64", "three parts of punctuation", bearer(lambda w: "!!!!.@@@@.####"), "malformed token"),
    Case("payload-not-object", "payload is a JSON array",
         bearer(lambda w: raw_jwt({"alg": "EdDSA", "kid": "ed"}, [1, 2], b"x" * 64)), "not a JSON object"),  # type: ignore[arg-type]
    Case("truncated-signature", "signature part removed",
         bearer(lambda w: w.jwt().rsplit(".", 1)[0] + "."), "three non-empty dot-separated parts"),
    Case("truncated-half", "first half of a valid JWT", bearer(lambda w: w.jwt()[: len(w.jwt()) // 2]), "malformed"),
    # --- algorithm and key confusion ---
    Case("alg-none-unsigned", "alg none, empty signature",
         bearer(lambda w: raw_jwt({"alg": "none", "kid": "ed"}, w.claims())), "three non-empty dot-separated parts"),
    Case("alg-none-signed", "alg none with some signature bytes",
         bearer(lambda w: raw_jwt({"alg": "none", "kid": "ed"}, w.claims(), b"sig")), "algorithm 'none' is not allowed"),
    Case("hs256-public-key", "HS256 keyed with the Ed25519 public key's PEM",
         bearer(_hs256_with_public_key), "algorithm 'HS256' is not allowed"),
    Case("rs256-on-okp-key", "RSA signature, header names the OKP key",
         bearer(_rsa_header_on_okp_key), "algorithm RS256 does not match the 'OKP' signing key"),
    Case("ps256-on-rs256-key", "PS256 signature with a key published for RS256",
         bearer(_ps256_on_rs256_key), "does not match the key's algorithm 'RS256'"),
    Case("es384-not-allowed", "valid ES384 signature, ES384 not in the allowlist",
         bearer(lambda w: w.jwt(key="es384")), "algorithm 'ES384' is not allowed"),
    Case("unknown-kid", "kid the JWKS does not have", bearer(lambda w: w.jwt(headers={"kid": "no-such-key"})),
         "unknown signing key 'no-such-key'"),
    Case("missing-kid", "header without kid", bearer(lambda w: w.jwt(headers={"kid": None})), "no key id"),
    Case("hostile-kid", "kid with quotes, CR LF and non-Latin-1 characters",
         bearer(lambda w: w.jwt(headers={"kid": 'x"\r\nSet-Cookie: a=b \u20ac'})), "unknown signing key"),
    Case("embedded-jwk", "attacker key embedded as jwk and jku headers",
         bearer(_embedded_jwk), "unknown signing key 'attacker'"),
    Case("forged-with-known-kid", "signed by the attacker's key under a trusted kid",
         bearer(lambda w: w.attacker.sign(w.claims(), headers={"kid": "ed"})), "invalid signature"),
    Case("tampered-payload", "sub changed after signing", bearer(_tamper_payload), "invalid signature"),
    Case("tampered-signature", "one signature character changed", bearer(_tamper_signature), "invalid signature"),
    # --- claims ---
    Case("expired", f"exp 120 s ago, leeway {LEEWAY} s", bearer(lambda w: w.jwt(exp=now() - 120)), "token expired"),
    Case("nbf-future", "nbf 10 minutes ahead", bearer(lambda w: w.jwt(nbf=now() + 600)), "not yet valid"),
    Case("iat-future", "iat 10 minutes ahead", bearer(lambda w: w.jwt(iat=now() + 600)), "not yet valid"),
    Case("wrong-iss", "issuer nobody configured", bearer(lambda w: w.jwt(iss="http://127.0.0.1:1")),
         "untrusted issuer 'http://127.0.0.1:1'"),
    Case("wrong-aud", "audience of another app", bearer(lambda w: w.jwt(aud="https://other-app.example")), "wrong audience"),
    Case("missing-aud", "no aud claim", bearer(lambda w: w.jwt(aud=None)), "wrong audience"),
    Case("missing-sub", "no sub claim", bearer(lambda w: w.jwt(sub=None)), "no 'sub' claim"),
    Case("empty-sub", "sub is an empty string", bearer(lambda w: w.jwt(sub="")), "sub"),
    Case("numeric-sub", "sub is a number", bearer(lambda w: w.jwt(sub=42)), "no usable 'sub' claim"),
    Case("missing-exp", "no exp claim", bearer(lambda w: w.jwt(exp=None)), "no 'exp' claim"),
    Case("exp-not-number", "exp is text", bearer(lambda w: w.jwt(exp="tomorrow")), "exp, nbf and iat must be numbers"),
    Case("session-jwt-typed-at-jwt", "session-JWT issuer but typ at+jwt",
         bearer(lambda w: w.jwt(headers={"typ": "at+jwt"})), "wrong token type 'at+jwt'"),
    # --- MCP OAuth access tokens ---
    Case("oauth-other-resource", "access token for another MCP server",
         bearer(lambda w: w.oauth(aud="http://127.0.0.1:1/mcp")), "not for this server's resource"),
    Case("oauth-typ-jwt", "OAuth issuer but typ JWT", bearer(lambda w: w.oauth(headers={"typ": "JWT"})),
         "wrong token type 'JWT'"),
    Case("oauth-no-typ", "OAuth issuer, no typ", bearer(lambda w: w.oauth(headers={"typ": ""})), "wrong token type"),
    Case("oauth-expired", "access token expired an hour ago",
         bearer(lambda w: w.oauth(iat=now() - 7200, exp=now() - 3600)), "token expired"),
    Case("oauth-read-only-scope", "valid token without tasks:write calling a write tool",
         bearer(lambda w: w.oauth(scope="tasks:read")), "create_task needs the tasks:write scope",
         status=403),
    Case("oauth-read-only-scp-list", "scp claim as a list without tasks:write",
         bearer(lambda w: w.oauth(scope=None, scp=["tasks:read", "openid"])), "needs the tasks:write scope",
         status=403),
    Case("oauth-read-only-delete", "token without tasks:write calling delete_task",
         bearer(lambda w: w.oauth(scope="openid offline_access")), "needs the tasks:write scope",
         status=403, tool="delete_task"),
    Case("oauth-read-only-batch", "a batch whose second call writes, first call reads",
         bearer(lambda w: w.oauth(scope="tasks:read")), "create_task needs the tasks:write scope",
         status=403, tool="batch"),
    # --- issuers ---
    Case("dev-issuer", "development issuer token while Better Auth is configured",
         bearer(_dev_token), "untrusted issuer 'urn:taskstore:dev-issuer'"),
    # --- Better Auth session tokens ---
    Case("session-expired", "session row expired an hour ago", bearer(lambda w: w.sessions["expired"]), "session expired"),
    Case("session-wrong-signature", "signed with another secret", bearer(_wrong_session_signature),
         "invalid session token signature"),
    Case("session-wrong-signature-urlencoded", "the same, URL-encoded as in the cookie",
         bearer(lambda w: urllib.parse.quote(_wrong_session_signature(w), safe="")), "invalid session token signature"),
    Case("session-signature-not-base64", "44 characters that are not base64",
         bearer(lambda w: w.sessions["valid"] + "." + "!" * 43 + "="), "not base64"),
    Case("session-signature-short", "truncated signature",
         bearer(lambda w: sign_session(w.sessions["valid"], SECRET)[:-5]), "malformed session token signature"),
    Case("session-deleted-user", "session row whose user row is gone", bearer(lambda w: w.sessions["orphan"]),
         "user no longer exists"),
    Case("session-unknown", "well-formed token no session has", bearer(lambda w: session_token()), "unknown session token"),
    Case("session-unknown-signed", "unknown token with a correct signature",
         bearer(lambda w: sign_session(session_token(), SECRET)), "unknown session token"),
    Case("session-sql-text", "SQL in place of a token", bearer(lambda w: "x' OR '1'='1"), "malformed token"),
]


@pytest.fixture(scope="module")
async def world(postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    database_url = await postgres_databases.create("taskstore_attack")
    await create_better_auth_tables(database_url)
    await add_user(database_url, USER)
    sessions = {"valid": session_token(), "expired": session_token(), "orphan": session_token()}
    await add_session(database_url, USER, sessions["valid"], 86400)
    await add_session(database_url, USER, sessions["expired"], -3600)
    await add_session(database_url, GONE_USER, sessions["orphan"], 86400)

    keys = {
        "ed": SigningKey.ed25519("ed"),
        "ed25519-named": SigningKey.ed25519("ed25519-named", jwk_alg="Ed25519"),
        "es256": SigningKey.ec("es256", ec.SECP256R1(), "ES256"),
        "es384": SigningKey.ec("es384", ec.SECP384R1(), "ES384"),
        "rsa": SigningKey.rsa("rsa", "RS256"),
    }
    data_dir: Path = tmp_path_factory.mktemp("attack")
    # A genuine development-issuer token: signed by the key in this server's data directory.
    dev_token = issue_dev_token(data_dir, USER)
    with running_jwks_server(JwksServer()) as jwks:
        jwks.set_keys(*keys.values())
        env = {
            "BETTER_AUTH_URL": jwks.base_url,
            "BETTER_AUTH_SECRET": SECRET,
            "TASKSTORE_JWT_LEEWAY_SECONDS": str(LEEWAY),
            "TASKSTORE_LOG_LEVEL": "DEBUG",
        }
        with http_server(data_dir, database_url, extra_args=("--auto-migrate",), env=env) as server:
            yield World(server, database_url, jwks.base_url, keys, SigningKey.ed25519("attacker"), sessions, dev_token)


async def _post_tool_call(world: World, authorization: str | None, tool: str) -> httpx2.Response:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    def call(name: str, arguments: dict[str, Any], request_id: int) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}

    body: Any
    if tool == "batch":
        body = [call("list_tasks", {}, 1), call("create_task", {"title": "written by an attacker"}, 2)]
    elif tool == "create_task":
        body = call(tool, {"title": "written by an attacker"}, 1)
    else:
        body = call(tool, {"task_id": 1}, 1)
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.post(world.server.url, headers=headers, content=json.dumps(body))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_hostile_token_is_rejected(world: World, case: Case) -> None:
    authorization, token = case.request(world)
    before = await count_rows(world.database_url, TABLES)

    response = await _post_tool_call(world, authorization, case.tool)

    after = await count_rows(world.database_url, TABLES)
    # Shown with `pytest -s`: the table of what each case returned.
    print(f"\n{case.id}: {response.status_code} {response.json().get('error_description', '')}")
    assert response.status_code == case.status, response.text
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer "), challenge
    expected_error = "insufficient_scope" if case.status == 403 else "invalid_token"
    assert f'error="{expected_error}"' in challenge
    assert "resource_metadata=" in challenge
    body = response.json()
    assert body["error"] == expected_error
    assert case.reason in body["error_description"], body["error_description"]
    if len(token) >= 8:
        assert token not in response.text
        assert token not in challenge
        assert token not in world.server.log()
    assert after == before


def test_table_has_enough_cases() -> None:
    assert len(CASES) >= 25
    assert len({case.id for case in CASES}) == len(CASES)


# --- controls: the same path accepts valid tokens, so the cases above can fail ----------------

VALID = [
    ("session-jwt-eddsa", lambda w: w.jwt()),
    ("session-jwt-ed25519-named-key", lambda w: w.jwt(key="ed25519-named")),
    ("session-jwt-ed25519-alg-header", lambda w: ed25519_named_jwt(w.keys["ed25519-named"], w.claims())),
    ("session-jwt-es256", lambda w: w.jwt(key="es256")),
    ("session-jwt-rs256", lambda w: w.jwt(key="rsa")),
    ("session-jwt-no-typ", lambda w: w.jwt(headers={"typ": ""})),
    ("session-jwt-expired-within-leeway", lambda w: w.jwt(exp=now() - LEEWAY // 3)),
    ("session-jwt-issuer-with-slash", lambda w: w.jwt(iss=w.origin + "/", aud=w.origin + "/")),
    ("oauth-write", lambda w: w.oauth()),
    ("oauth-aud-list", lambda w: w.oauth(aud=[w.resource, w.oauth_issuer + "/oauth2/userinfo"])),
    ("session-raw", lambda w: w.sessions["valid"]),
    ("session-signed", lambda w: sign_session(w.sessions["valid"], SECRET)),
    ("session-signed-urlencoded", lambda w: urllib.parse.quote(sign_session(w.sessions["valid"], SECRET), safe="")),
]


@pytest.mark.parametrize("make", [item[1] for item in VALID], ids=[item[0] for item in VALID])
async def test_valid_token_calls_a_tool(world: World, make: Callable[[World], str]) -> None:
    async with world.server.client(make(world)) as client:
        result = await client.call_tool("list_tasks", {})
    assert not result.is_error, result


async def test_valid_token_write_adds_row(world: World) -> None:
    before = await count_rows(world.database_url, TABLES)
    async with world.server.client(world.oauth()) as client:
        result = await client.call_tool("create_task", {"title": "control task"})
    after = await count_rows(world.database_url, TABLES)
    assert not result.is_error, result
    assert after["task"] == before["task"] + 1


async def test_read_only_token_may_call_read_only_tools(world: World) -> None:
    async with world.server.client(world.oauth(scope="tasks:read")) as client:
        result = await client.call_tool("list_tasks", {})
    assert not result.is_error, result


async def test_read_only_token_oversized_body_rejected(world: World) -> None:
    """The scope check cannot see past 4 MiB, so a larger body from a read-only token gets 413."""
    body = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "create_task", "arguments": {"title": "x", "description": "y" * (5 * 1024 * 1024)}},
    })
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "authorization": f"Bearer {world.oauth(scope='tasks:read')}",
    }
    before = await count_rows(world.database_url, TABLES)
    async with httpx2.AsyncClient(timeout=60, trust_env=False) as client:
        response = await client.post(world.server.url, headers=headers, content=body)
    after = await count_rows(world.database_url, TABLES)
    assert response.status_code == 413
    assert after == before


async def test_metadata_names_better_auth(world: World) -> None:
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        response = await client.get(world.server.base_url + "/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == world.resource
    assert document["authorization_servers"] == [world.oauth_issuer]

