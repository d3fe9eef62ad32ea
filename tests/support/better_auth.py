"""Run a real Better Auth server for tests and obtain the tokens it issues.

The server is ``tests/node/better-auth-server.mjs`` (Better Auth 1.7 with the
email-and-password, ``jwt``, ``bearer`` and ``@better-auth/mcp`` plugins) on a
PostgreSQL database. Install its packages once with
``npm ci --prefix tests/node``.

Typical use::

    url = "postgresql://postgres@127.0.0.1:5432/ba_mytest"
    create_database(url)
    try:
        with BetterAuthServer(url, mcp_resource="http://127.0.0.1:8123/mcp") as ba:
            user = ba.sign_up("a@example.test", "a long password", "Alice")
            token = ba.get_jwt(user.session_token)
            oauth = ba.get_mcp_access_token(user.session_token)
    finally:
        drop_database(url)

Facts about the tokens (observed against Better Auth 1.7.5; see
``tests/node/FINDINGS.md``):

* The session token is 32 alphanumeric characters, stored verbatim in
  ``session.token``. Clients send ``<token>.<signature>``, where the signature
  is standard base64 (``+``, ``/``, ``=`` padding, 44 characters) of
  HMAC-SHA256(key=secret, msg=token). In a cookie the whole value is
  URL-encoded; as a bearer token it is sent as is. The ``bearer`` plugin also
  accepts the raw token and signs it itself.
* ``GET /api/auth/token`` returns an EdDSA (Ed25519) JWT with ``iss`` and
  ``aud`` both equal to the base URL, ``sub`` the user id, the user fields as
  extra claims, and a 15 minute lifetime. Its header has ``alg`` and ``kid``
  but no ``typ``.
* OAuth access tokens from the MCP plugin are EdDSA JWTs with
  ``typ: at+jwt`` and ``iss`` = base URL + ``/api/auth``. ``aud`` is the MCP
  resource URL, or a list of it and the userinfo URL when the scope has
  ``openid``.

This module needs only the standard library and ``httpx2``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.cookiejar
import os
import queue
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx2

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
SERVER_SCRIPT = NODE_DIR / "better-auth-server.mjs"
DATABASE_SCRIPT = NODE_DIR / "pg-database.mjs"

# The redirect URI of the OAuth clients this module registers. Nothing listens
# there: the authorization code is read from the redirect's Location header.
# Better Auth accepts plain-http redirect URIs only on loopback and only for
# clients registered with application_type "native" (RFC 8252).
DEFAULT_REDIRECT_URI = "http://127.0.0.1/oauth/callback"


class BetterAuthError(RuntimeError):
    """The Better Auth server failed to start or returned an unexpected response."""


@dataclasses.dataclass(frozen=True)
class SignedUpUser:
    user_id: str
    email: str
    name: str
    password: str
    # As stored in session.token.
    session_token: str
    # "<session_token>.<base64 HMAC-SHA256>", not URL-encoded: what a bearer
    # client sends, and the cookie value before URL-encoding.
    signed_session_token: str


@dataclasses.dataclass(frozen=True)
class OAuthClient:
    client_id: str
    redirect_uri: str
    raw: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class OAuthTokens:
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None
    id_token: str | None
    client: OAuthClient
    raw: Mapping[str, Any]


def sign_session_token(session_token: str, secret: str) -> str:
    """Return ``token.signature`` exactly as Better Auth forms it.

    Better Auth (through better-call's ``signCookieValue``) signs the token
    with HMAC-SHA256 keyed by the UTF-8 secret and appends the standard,
    padded base64 of the digest.
    """
    digest = hmac.new(secret.encode(), session_token.encode(), hashlib.sha256).digest()
    return f"{session_token}.{base64.b64encode(digest).decode()}"


def verify_signed_session_token(signed: str, secret: str) -> str | None:
    """Return the raw session token if ``signed`` carries a valid signature.

    Accepts the cookie form (URL-encoded) too. Mirrors better-call's
    ``getSignedCookie``: split at the last dot, the signature must be 44
    characters of padded base64.
    """
    value = urllib.parse.unquote(signed)
    token, dot, signature = value.rpartition(".")
    if not dot or not token or len(signature) != 44 or not signature.endswith("="):
        return None
    expected = sign_session_token(token, secret).rpartition(".")[2]
    return token if hmac.compare_digest(signature, expected) else None


def is_available() -> bool:
    """True when node and the npm packages under tests/node are installed."""
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "better-auth").is_dir()


def _run_database_script(action: str, database_url: str, node: str) -> None:
    result = subprocess.run(
        [node, str(DATABASE_SCRIPT), action, database_url],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise BetterAuthError(f"pg-database.mjs {action} failed: {result.stderr.strip()}")


def create_database(database_url: str, *, node: str = "node") -> None:
    """Create the database named in ``database_url`` if it does not exist.

    The name must start with ``ba_`` and the host must be loopback.
    """
    _run_database_script("create", database_url, node)


def drop_database(database_url: str, *, node: str = "node") -> None:
    """Drop the database named in ``database_url``, ending its sessions first.

    Same name and host rules as :func:`create_database`. To delete a single
    user instead, use :meth:`BetterAuthServer.delete_user`, or SQL:
    ``DELETE FROM "user" WHERE id = $1`` cascades to ``session``, ``account``
    and the OAuth token and consent tables.
    """
    _run_database_script("drop", database_url, node)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


class _RefuseCookies(http.cookiejar.DefaultCookiePolicy):
    """Cookie policy that stores and sends no cookies, so each call names its session."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _bearer(session_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {session_token}"}


class BetterAuthServer:
    """A Better Auth process on 127.0.0.1, for use as a context manager.

    ``database_url`` must name an existing PostgreSQL database; the server
    creates its tables there on start. With ``port=None`` a free port is
    picked. The process's stderr goes to ``log_path`` (kept after exit) for
    debugging. ``jwt_expiration`` (e.g. ``"5s"``) and ``access_token_ttl``
    (seconds) shorten token lifetimes for expiry tests. ``mcp_scopes`` replaces the
    scopes the MCP plugin grants (default: openid, profile, email, offline_access).
    """

    def __init__(
        self,
        database_url: str,
        port: int | None = None,
        secret: str | None = None,
        mcp_resource: str | None = None,
        *,
        jwt_expiration: str | None = None,
        access_token_ttl: int | None = None,
        mcp_scopes: Iterable[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        node: str = "node",
    ) -> None:
        self.database_url = database_url
        self.secret = secret if secret is not None else secrets.token_urlsafe(48)
        self._requested_port = port
        self._mcp_resource = mcp_resource
        self._jwt_expiration = jwt_expiration
        self._access_token_ttl = access_token_ttl
        self._mcp_scopes = list(mcp_scopes) if mcp_scopes is not None else None
        self._log_path = Path(log_path) if log_path is not None else None
        self._startup_timeout = startup_timeout
        self._node = node
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: Any = None
        self._port: int | None = None
        self._http: httpx2.Client | None = None

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> BetterAuthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the process and wait for its READY line."""
        if self._proc is not None:
            raise BetterAuthError("already started")
        if not is_available():
            raise BetterAuthError(f"node or the npm packages are missing: run `npm ci --prefix {NODE_DIR}`")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="better-auth-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        # Another process can take a port from _free_port before node binds
        # it. In that case, retry a few times with a new port.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or _free_port()
            if self._spawn(port):
                break
            if attempt == attempts - 1 or "EADDRINUSE" not in self._log_tail():
                raise BetterAuthError(
                    f"Better Auth did not become ready; log {self._log_path}:\n{self._log_tail()}"
                )
        self._http = httpx2.Client(
            base_url=self.base_url,
            timeout=15.0,
            # Never route loopback traffic through a proxy from the environment.
            trust_env=False,
            follow_redirects=False,
            # Sign-up sets a session cookie. A client that kept it would send
            # it with later calls made for another user or with a bad token.
            cookies=http.cookiejar.CookieJar(policy=_RefuseCookies()),
        )

    def _spawn(self, port: int) -> bool:
        base_url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        # A rotation list would take precedence over BETTER_AUTH_SECRET and
        # change the key that signs session tokens.
        env.pop("BETTER_AUTH_SECRETS", None)
        env.update(
            BA_DATABASE_URL=self.database_url,
            BA_PORT=str(port),
            BETTER_AUTH_SECRET=self.secret,
            BETTER_AUTH_URL=base_url,
            BETTER_AUTH_TELEMETRY="0",
        )
        if self._mcp_resource:
            env["BA_MCP_RESOURCE"] = self._mcp_resource
        if self._jwt_expiration:
            env["BA_JWT_EXPIRATION"] = self._jwt_expiration
        if self._access_token_ttl:
            env["BA_ACCESS_TOKEN_TTL"] = str(self._access_token_ttl)
        if self._mcp_scopes is not None:
            env["BA_MCP_SCOPES"] = " ".join(self._mcp_scopes)

        assert self._log_path is not None
        self._log_file = open(self._log_path, "a", encoding="utf-8")  # noqa: SIM115
        self._log_file.write(f"--- starting better-auth-server.mjs on {base_url}\n")
        self._log_file.flush()
        try:
            proc = subprocess.Popen(
                [self._node, str(SERVER_SCRIPT)],
                cwd=NODE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log_file,
                text=True,
            )
        except OSError:
            self._log_file.close()
            self._log_file = None
            raise
        self._proc = proc
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            # Keeps reading stdout after READY so that the pipe never fills.
            # _kill may close the pipe while this thread still reads it.
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    lines.put(line)
            except (OSError, ValueError):
                pass
            lines.put(None)

        threading.Thread(target=pump, name=f"better-auth-stdout-{proc.pid}", daemon=True).start()
        deadline = time.monotonic() + self._startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith("READY "):
                ready_url = line.split(" ", 1)[1].strip()
                if ready_url != base_url:
                    self._log_file.write(f"--- unexpected READY url {ready_url}\n")
                    break
                self._port = port
                return True
            self._log_file.write(f"[stdout] {line}")
            self._log_file.flush()
        self._kill()
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM to this PID only
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Close the HTTP client and terminate the process; safe to call twice."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._kill()

    def _log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    # -- addresses ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def port(self) -> int:
        if self._port is None:
            raise BetterAuthError("server not started: call start() or use it in a with block")
        return self._port

    @property
    def base_url(self) -> str:
        """Origin of the server; also ``iss`` and ``aud`` of session JWTs."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/auth"

    @property
    def jwks_url(self) -> str:
        return f"{self.api_url}/jwks"

    @property
    def jwt_issuer(self) -> str:
        return self.base_url

    @property
    def oauth_issuer(self) -> str:
        """``iss`` of OAuth access and ID tokens (the base path is included)."""
        return self.api_url

    @property
    def mcp_resource(self) -> str:
        """The resource OAuth access tokens are bound to (their ``aud``)."""
        return self._mcp_resource or f"{self.base_url}/mcp"

    # -- HTTP helpers ------------------------------------------------------

    @property
    def http(self) -> httpx2.Client:
        """An httpx2 client with ``base_url`` set, for calls not wrapped here."""
        if self._http is None:
            raise BetterAuthError("server not started: call start() or use it in a with block")
        return self._http

    def _check(self, response: httpx2.Response, *expected: int) -> httpx2.Response:
        if response.status_code not in (expected or (200,)):
            raise BetterAuthError(
                f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
            )
        return response

    # -- users and sessions ------------------------------------------------

    def _user_from_response(self, response: httpx2.Response, password: str) -> SignedUpUser:
        body = response.json()
        raw = body["token"]
        signed = response.headers.get("set-auth-token") or sign_session_token(raw, self.secret)
        user = body["user"]
        return SignedUpUser(
            user_id=user["id"],
            email=user["email"],
            name=user["name"],
            password=password,
            session_token=raw,
            signed_session_token=signed,
        )

    def sign_up(self, email: str, password: str, name: str) -> SignedUpUser:
        """Create a user and its first session; passwords must be 8 to 128 characters."""
        response = self.http.post(
            "/api/auth/sign-up/email", json={"email": email, "password": password, "name": name}
        )
        return self._user_from_response(self._check(response), password)

    def sign_in(self, email: str, password: str) -> SignedUpUser:
        """Open a new session for an existing user."""
        response = self.http.post("/api/auth/sign-in/email", json={"email": email, "password": password})
        return self._user_from_response(self._check(response), password)

    def sign_out(self, session_token: str) -> None:
        """Delete the session (its row in ``session``) server-side."""
        response = self.http.post(
            "/api/auth/sign-out", headers={**_bearer(session_token), "origin": self.base_url}, json={}
        )
        self._check(response)

    def get_session(self, session_token: str) -> dict[str, Any] | None:
        """Return ``{"session": ..., "user": ...}``, or None for an unknown session."""
        response = self._check(self.http.get("/api/auth/get-session", headers=_bearer(session_token)))
        return response.json()

    def get_jwt(self, session_token: str) -> str:
        """Return a session JWT from ``GET /api/auth/token``.

        ``session_token`` may be raw or signed. ``get-session`` returns the
        same kind of JWT in its ``set-auth-jwt`` response header.
        """
        response = self._check(self.http.get("/api/auth/token", headers=_bearer(session_token)))
        return response.json()["token"]

    def get_jwks(self) -> dict[str, Any]:
        return self._check(self.http.get("/api/auth/jwks")).json()

    def delete_user(self, user: SignedUpUser) -> None:
        """Delete the user through Better Auth's ``POST /api/auth/delete-user``.

        The password re-authenticates the request. Deleting the user row
        cascades to its sessions, accounts and OAuth grants.
        """
        response = self.http.post(
            "/api/auth/delete-user",
            headers={**_bearer(user.session_token), "origin": self.base_url},
            json={"password": user.password},
        )
        self._check(response)

    # -- OAuth 2.1 / MCP ---------------------------------------------------

    def register_oauth_client(
        self, redirect_uri: str = DEFAULT_REDIRECT_URI, client_name: str = "taskstore-mcp tests"
    ) -> OAuthClient:
        """Register a public (PKCE, no secret) client by RFC 7591 dynamic registration."""
        response = self.http.post(
            "/api/auth/oauth2/register",
            json={
                "client_name": client_name,
                "application_type": "native",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            },
        )
        body = self._check(response, 200, 201).json()
        return OAuthClient(client_id=body["client_id"], redirect_uri=redirect_uri, raw=body)

    def authorize(
        self,
        session_token: str,
        client: OAuthClient,
        *,
        scope: str = "openid offline_access",
        resources: Iterable[str] | None = None,
    ) -> tuple[str, str]:
        """Run the authorization-code request as the signed-in user.

        Returns ``(code, code_verifier)``. Better Auth redirects the first
        request for a client to the consent page. This method then does what
        that page would: it POSTs the signed query to ``/oauth2/consent`` with
        ``accept: true``. Later requests redirect straight back with a code.
        """
        verifier, challenge = _pkce_pair()
        state = secrets.token_urlsafe(16)
        params: list[tuple[str, str]] = [
            ("response_type", "code"),
            ("client_id", client.client_id),
            ("redirect_uri", client.redirect_uri),
            ("scope", scope),
            ("state", state),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
        params += [("resource", r) for r in (resources if resources is not None else [self.mcp_resource])]
        response = self._check(
            self.http.get("/api/auth/oauth2/authorize", params=params, headers=_bearer(session_token)), 302
        )
        location = response.headers["location"]
        if not location.startswith(client.redirect_uri):
            consent = self.http.post(
                "/api/auth/oauth2/consent",
                headers={**_bearer(session_token), "origin": self.base_url},
                json={"accept": True, "oauth_query": urllib.parse.urlsplit(location).query},
            )
            self._check(consent, 200, 302)
            if consent.status_code == 302:
                location = consent.headers["location"]
            else:
                body = consent.json()
                location = body.get("redirect_uri") or body.get("url") or ""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
        if "code" not in query:
            raise BetterAuthError(f"authorization returned no code: {location}")
        if query.get("state") != [state]:
            raise BetterAuthError(f"authorization returned the wrong state: {location}")
        if query.get("iss", [self.oauth_issuer]) != [self.oauth_issuer]:
            raise BetterAuthError(f"authorization returned the wrong issuer: {location}")
        return query["code"][0], verifier

    def _token_request(self, form: Mapping[str, str | list[str]], client: OAuthClient) -> OAuthTokens:
        response = self._check(self.http.post("/api/auth/oauth2/token", data=form))
        body = response.json()
        return OAuthTokens(
            access_token=body["access_token"],
            token_type=body.get("token_type", ""),
            expires_in=int(body.get("expires_in", 0)),
            scope=body.get("scope", ""),
            refresh_token=body.get("refresh_token"),
            id_token=body.get("id_token"),
            client=client,
            raw=body,
        )

    def get_mcp_access_token(
        self,
        session_token: str,
        *,
        client: OAuthClient | None = None,
        scope: str = "openid offline_access",
        resources: Iterable[str] | None = None,
    ) -> OAuthTokens:
        """Return an OAuth access token (``typ: at+jwt``) for the MCP resource.

        Registers a client unless one is given, then runs the authorization
        code flow with PKCE on behalf of the user who owns ``session_token``.
        ``resources`` defaults to ``[self.mcp_resource]``.
        """
        client = client or self.register_oauth_client()
        resource_list = list(resources) if resources is not None else [self.mcp_resource]
        code, verifier = self.authorize(session_token, client, scope=scope, resources=resource_list)
        form: dict[str, str | list[str]] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "client_id": client.client_id,
            "code_verifier": verifier,
        }
        if resource_list:
            # httpx2 encodes a list as repeated "resource" fields (RFC 8707).
            form["resource"] = resource_list
        return self._token_request(form, client)

    def refresh_mcp_access_token(self, tokens: OAuthTokens) -> OAuthTokens:
        """Exchange the refresh token in ``tokens`` for a new access token."""
        if not tokens.refresh_token:
            raise BetterAuthError("no refresh token: request the offline_access scope")
        form: dict[str, str | list[str]] = {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "client_id": tokens.client.client_id,
            "resource": self.mcp_resource,
        }
        return self._token_request(form, tokens.client)
