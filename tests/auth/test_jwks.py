"""JWKS fetching and caching, key rotation through a running server, and session-token parsing."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server.auth.better_auth import JwksKeySource, parse_jwks, parse_session_token, session_signature
from server.auth.errors import TokenRejected
from tests.auth.support import JwksServer, SigningKey, now, running_jwks_server, sign_session
from tests.conftest import PostgresDatabases
from tests.support.servers import HttpServer, http_server

URL = "http://127.0.0.1:9/api/auth/jwks"  # never contacted: a MockTransport responds instead


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeJwks:
    """A MockTransport handler whose responses the test changes between calls."""

    def __init__(self, *keys: SigningKey) -> None:
        self.document: Any = {"keys": [key.public_jwk() for key in keys]}
        self.status = 200
        self.body: bytes | None = None
        self.calls = 0

    def set_keys(self, *keys: SigningKey) -> None:
        self.document = {"keys": [key.public_jwk() for key in keys]}

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        if self.body is not None:
            return httpx2.Response(self.status, content=self.body)
        return httpx2.Response(self.status, json=self.document)


def make_source(fake: FakeJwks, clock: FakeClock, **options: Any) -> JwksKeySource:
    options.setdefault("cache_seconds", 300)
    options.setdefault("refetch_interval_seconds", 10)
    return JwksKeySource(URL, clock=clock, transport=httpx2.MockTransport(fake.handler), **options)


@pytest.fixture
def key_a() -> SigningKey:
    return SigningKey.ed25519("key-a")


@pytest.fixture
def key_b() -> SigningKey:
    return SigningKey.ed25519("key-b")


# --- JwksKeySource, unit level ------------------------------------------------------------------


async def test_first_use_fetches_and_caches(key_a: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock)

    first = await source.get_key("key-a")
    second = await source.get_key("key-a")

    assert first is not None
    assert first["x"] == key_a.public_jwk()["x"]
    assert second == first
    assert fake.calls == 1


async def test_unknown_kid_refetches_once(key_a: SigningKey, key_b: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock)
    await source.get_key("key-a")
    fake.set_keys(key_a, key_b)
    clock.advance(11)

    found = await source.get_key("key-b")

    assert found is not None
    assert fake.calls == 2


async def test_unknown_kids_are_rate_limited(key_a: SigningKey, key_b: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock, refetch_interval_seconds=10)
    await source.get_key("key-a")

    for index in range(20):
        clock.advance(0.1)
        assert await source.get_key(f"made-up-{index}") is None

    assert fake.calls == 1


async def test_refetch_allowed_again_after_the_interval(key_a: SigningKey, key_b: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock, refetch_interval_seconds=10)
    await source.get_key("key-a")
    fake.set_keys(key_a, key_b)

    clock.advance(5)
    too_soon = await source.get_key("key-b")
    clock.advance(5)
    after_interval = await source.get_key("key-b")

    assert too_soon is None
    assert after_interval is not None
    assert fake.calls == 2


async def test_removed_key_is_gone_after_the_cache_expires(key_a: SigningKey, key_b: SigningKey) -> None:
    fake, clock = FakeJwks(key_a, key_b), FakeClock()
    source = make_source(fake, clock, cache_seconds=60)
    await source.get_key("key-a")
    fake.set_keys(key_b)

    clock.advance(30)
    still_cached = await source.get_key("key-a")
    clock.advance(31)
    after_expiry = await source.get_key("key-a")

    assert still_cached is not None
    assert after_expiry is None
    assert fake.calls == 2


async def test_endpoint_failure_keeps_the_last_good_keys(key_a: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock, cache_seconds=60)
    await source.get_key("key-a")
    fake.status = 500
    clock.advance(61)

    with caplog.at_level(logging.WARNING, logger="server.auth.better_auth"):
        key = await source.get_key("key-a")

    assert key is not None
    assert fake.calls == 2
    assert URL in caplog.text
    assert "HTTP 500" in caplog.text


async def test_failed_refresh_is_not_retried_on_every_request(key_a: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock, cache_seconds=60, refetch_interval_seconds=10)
    await source.get_key("key-a")
    fake.status = 503
    clock.advance(61)

    for _ in range(5):
        clock.advance(1)
        await source.get_key("key-a")

    assert fake.calls == 2


async def test_no_keys_ever_fetched_is_a_503(key_a: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    fake.status = 502
    source = make_source(fake, clock)

    with pytest.raises(TokenRejected) as raised:
        await source.get_key("key-a")

    assert raised.value.status == 503
    assert "signing keys are unavailable" in raised.value.reason
    assert "HTTP 502" in raised.value.reason


async def test_oversized_response_is_rejected(key_a: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    fake.body = json.dumps({"keys": [key_a.public_jwk()], "padding": "x" * 5000}).encode()
    source = make_source(fake, clock, max_bytes=1024)

    with pytest.raises(TokenRejected) as raised:
        await source.get_key("key-a")

    assert "larger than 1024 bytes" in raised.value.reason


async def test_response_that_is_not_json_is_a_failure(key_a: SigningKey) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    fake.body = b"<html>login</html>"
    source = make_source(fake, clock)

    with pytest.raises(TokenRejected) as raised:
        await source.get_key("key-a")

    assert "not JSON" in raised.value.reason


async def test_timeout_is_a_failure(key_a: SigningKey) -> None:
    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    source = JwksKeySource(URL, clock=FakeClock(), transport=httpx2.MockTransport(slow), timeout_seconds=2)

    with pytest.raises(TokenRejected) as raised:
        await source.get_key("key-a")

    assert "timed out after 2 s" in raised.value.reason


async def test_key_set_changes_are_logged(key_a: SigningKey, key_b: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock)
    await source.get_key("key-a")
    fake.set_keys(key_b)
    clock.advance(11)

    with caplog.at_level(logging.INFO, logger="server.auth.better_auth"):
        await source.get_key("key-b")

    assert "added key-b" in caplog.text
    assert "removed key-a" in caplog.text


async def test_concurrent_unknown_kids_share_one_fetch(key_a: SigningKey, key_b: SigningKey) -> None:
    import asyncio

    fake, clock = FakeJwks(key_a), FakeClock()
    source = make_source(fake, clock)
    await source.get_key("key-a")
    fake.set_keys(key_a, key_b)
    clock.advance(11)

    found = await asyncio.gather(*(source.get_key("key-b") for _ in range(10)))

    assert all(key is not None for key in found)
    assert fake.calls == 2


def test_credentials_in_the_jwks_url_are_not_logged() -> None:
    from server.auth.better_auth import _redacted

    assert _redacted("https://user:hunter2@auth.example.test:8443/api/auth/jwks") == "https://auth.example.test:8443/api/auth/jwks"


# --- parse_jwks -----------------------------------------------------------------------------------


def test_parse_keeps_signing_keys_and_drops_the_rest() -> None:
    ed = SigningKey.ed25519("ed").public_jwk()
    ed25519_named = {**SigningKey.ed25519("named").public_jwk(), "alg": "Ed25519"}
    encryption = {**SigningKey.ed25519("enc").public_jwk(), "use": "enc"}
    symmetric = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    hs_alg = {**SigningKey.ed25519("hs").public_jwk(), "alg": "HS256"}
    no_kid = {key: value for key, value in SigningKey.ed25519("x").public_jwk().items() if key != "kid"}
    with_private = {**SigningKey.ed25519("private").public_jwk(), "d": "c2VjcmV0"}

    keys = parse_jwks({"keys": [ed, ed25519_named, encryption, symmetric, hs_alg, no_kid, with_private, "junk"]}, URL)

    assert sorted(keys) == ["ed", "named", "private"]
    assert keys["named"]["alg"] == "Ed25519"
    assert "d" not in keys["private"]


@pytest.mark.parametrize("document", [[], {"keys": "none"}, {"nokeys": []}, None])
def test_parse_rejects_documents_without_a_key_list(document: Any) -> None:
    from server.auth.better_auth import _Unavailable

    with pytest.raises(_Unavailable):
        parse_jwks(document, URL)


# --- session-token signatures --------------------------------------------------------------------

FINDINGS_SECRET = "taskstore-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
FINDINGS_TOKEN = "P0HoRUISYIGwQ8SajZYpEw4HzrYWvOTG"
# Observed from a real Better Auth 1.7.5 with that secret (tests/node/FINDINGS.md).
FINDINGS_SIGNED = "P0HoRUISYIGwQ8SajZYpEw4HzrYWvOTG.lHqcp7l+3YGQyxsyXE+tgAYdv4lAURes5v/4G8DcsVk="


def test_signature_matches_better_auth() -> None:
    assert f"{FINDINGS_TOKEN}.{session_signature(FINDINGS_TOKEN, FINDINGS_SECRET)}" == FINDINGS_SIGNED


def test_signed_form_gives_the_raw_token() -> None:
    assert parse_session_token(FINDINGS_SIGNED, FINDINGS_SECRET) == FINDINGS_TOKEN


def test_url_encoded_signed_form_gives_the_raw_token() -> None:
    encoded = urllib.parse.quote(FINDINGS_SIGNED, safe="")
    assert "%2B" in encoded
    assert parse_session_token(encoded, FINDINGS_SECRET) == FINDINGS_TOKEN


def test_raw_session_token_accepted_by_default() -> None:
    assert parse_session_token(FINDINGS_TOKEN, FINDINGS_SECRET) == FINDINGS_TOKEN


def test_raw_token_rejected_when_signatures_are_required() -> None:
    with pytest.raises(TokenRejected) as raised:
        parse_session_token(FINDINGS_TOKEN, FINDINGS_SECRET, require_signature=True)
    assert "unsigned session token" in raised.value.reason


def test_signed_session_token_accepted_when_required() -> None:
    assert parse_session_token(FINDINGS_SIGNED, FINDINGS_SECRET, require_signature=True) == FINDINGS_TOKEN


def test_signed_form_without_a_secret_is_rejected() -> None:
    with pytest.raises(TokenRejected) as raised:
        parse_session_token(FINDINGS_SIGNED, None)
    assert "BETTER_AUTH_SECRET is not set" in raised.value.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (sign_session(FINDINGS_TOKEN, "another secret"), "invalid session token signature"),
        (FINDINGS_TOKEN[:-1] + "X." + FINDINGS_SIGNED.split(".")[1], "invalid session token signature"),
        (FINDINGS_SIGNED[:-1], "malformed session token signature"),
        (FINDINGS_SIGNED.replace("+", "-").replace("/", "_"), "not base64"),
        (FINDINGS_TOKEN + "." + "=" * 44, "not base64"),
        ("short." + FINDINGS_SIGNED.split(".")[1], "malformed token"),
        ("has space in it and is long enough", "malformed token"),
        ("", "malformed token"),
    ],
    ids=["other-secret", "other-token", "truncated", "urlsafe-alphabet", "all-padding", "short-token", "spaces", "empty"],
)
def test_bad_session_tokens(value: str, reason: str) -> None:
    with pytest.raises(TokenRejected) as raised:
        parse_session_token(value, FINDINGS_SECRET)
    assert reason in raised.value.reason
    assert value == "" or value not in raised.value.reason


# --- rotation through a running server ----------------------------------------------------------


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    with running_jwks_server(JwksServer()) as server:
        yield server


@pytest.fixture(scope="module")
async def rotation_server(
    jwks: JwksServer, postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HttpServer]:
    database_url = await postgres_databases.create("taskstore_jwks")
    data_dir: Path = tmp_path_factory.mktemp("jwks")
    env = {
        "BETTER_AUTH_URL": jwks.base_url,
        # Short enough for a test to outwait, long enough that two requests in a row share a fetch.
        "TASKSTORE_JWKS_CACHE_SECONDS": "1",
        "TASKSTORE_JWKS_REFETCH_INTERVAL_SECONDS": "0",
        "TASKSTORE_SESSION_TOKENS": "false",
    }
    with http_server(data_dir, database_url, extra_args=("--auto-migrate",), env=env) as server:
        yield server


def _token(key: SigningKey, jwks: JwksServer) -> str:
    issued = now()
    claims = {"sub": "rotation-user", "iss": jwks.base_url, "aud": jwks.base_url, "iat": issued, "exp": issued + 600}
    return key.sign(claims)


async def _status(server: HttpServer, token: str) -> tuple[int, str]:
    """POST an initialize request: the guard returns 401 itself, else the SDK returns 200."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "jwks-test", "version": "1"}},
    }
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        response = await client.post(server.url, headers=headers, content=json.dumps(body))
    description = response.json().get("error_description", "") if response.status_code == 401 else ""
    return response.status_code, description


def _outwait_cache() -> None:
    # The server's cache lives 1 s; this is the one wait the rotation needs.
    time.sleep(1.3)


async def test_rotation_through_the_server(rotation_server: HttpServer, jwks: JwksServer) -> None:
    old, new = SigningKey.ed25519("rotation-old"), SigningKey.ed25519("rotation-new")
    jwks.set_keys(old)
    jwks.fail_status = None

    status_old, _ = await _status(rotation_server, _token(old, jwks))
    assert status_old == 200

    # A new key appears: its first token costs exactly one refetch.
    jwks.set_keys(old, new)
    fetches = jwks.request_count()
    status_new, _ = await _status(rotation_server, _token(new, jwks))
    assert status_new == 200
    assert jwks.request_count() == fetches + 1

    # The old key is removed: once the cache has expired its tokens are rejected.
    jwks.set_keys(new)
    _outwait_cache()
    status_removed, reason = await _status(rotation_server, _token(old, jwks))
    assert status_removed == 401
    assert "unknown signing key 'rotation-old'" in reason

    # The endpoint fails: the last good keys still verify, and the failure is logged.
    jwks.fail_status = 500
    _outwait_cache()
    fetches = jwks.request_count()
    status_during_outage, _ = await _status(rotation_server, _token(new, jwks))
    jwks.fail_status = None
    assert status_during_outage == 200
    assert jwks.request_count() > fetches
    assert f"GET {jwks.jwks_url} returned HTTP 500" in rotation_server.log()
    assert "removed rotation-old" in rotation_server.log()

