"""Every form of PostgreSQL URL a Neon user pastes, parsed by ``database_config``.

TLS is never weaker than libpq would make it for the same URL: ``verify-full`` checks the
chain and the host name, ``verify-ca`` the chain, and ``require`` always encrypts, never
falling back to plain text. PgBouncer (``-pooler``) hosts get no cached prepared statements.
The libpq-only parameters become asyncpg arguments. The last tests connect to the local
PostgreSQL through the same code path.

tests/unit/test_models.py covers the basic cases (schemes, the three non-verifying modes,
``describe``); this file covers the combinations.
"""

from __future__ import annotations

import datetime
import ssl
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from sqlalchemy.engine import make_url

from store import ConfigurationError, Database, DatabaseUnavailable, create_engine, database_config
from store.engine import POOLER_ENV

POOLER_HOST = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
DIRECT_HOST = "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
PASSWORD = "npg_S3cretPassw0rd"
SCHEMES = ["postgres", "postgresql", "postgresql+asyncpg"]
CHANNEL_BINDINGS = [None, "disable", "prefer", "require"]


@pytest.fixture(autouse=True)
def no_pooler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pooler variable would turn pooler settings on for every URL.
    monkeypatch.delenv(POOLER_ENV, raising=False)


def neon_url(scheme: str = "postgresql", host: str = POOLER_HOST, **params: str | None) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items() if value is not None)
    return f"{scheme}://alex:{PASSWORD}@{host}/neondb" + (f"?{query}" if query else "")


def ssl_context(url: str) -> ssl.SSLContext:
    argument = database_config(url).connect_args["ssl"]
    assert isinstance(argument, ssl.SSLContext), f"expected an SSL context, got {argument!r}"
    return argument


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A self-signed CA certificate in a PEM file, and its common name."""
    name = f"taskstore test CA {uuid.uuid4().hex[:6]}"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("ca") / "root.crt"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path, name


def loaded_ca_names(context: ssl.SSLContext) -> set[str]:
    names = set()
    for certificate in context.get_ca_certs():
        for rdn in certificate.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    names.add(value)
    return names


# --- schemes and hosts -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("host", [POOLER_HOST, DIRECT_HOST])
def test_scheme_and_host_keep_every_connection_part(scheme: str, host: str) -> None:
    url = database_config(neon_url(scheme, host, sslmode="require")).url
    assert url.drivername == "postgresql+asyncpg"
    assert url.host == host
    assert url.database == "neondb"
    assert url.username == "alex"
    assert url.password == PASSWORD


# --- TLS is never weakened ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("host", [POOLER_HOST, DIRECT_HOST])
@pytest.mark.parametrize("channel_binding", CHANNEL_BINDINGS)
def test_verify_full_checks_chain_and_host_name(scheme: str, host: str, channel_binding: str | None) -> None:
    context = ssl_context(neon_url(scheme, host, sslmode="verify-full", channel_binding=channel_binding))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.mark.parametrize("host", [POOLER_HOST, DIRECT_HOST])
@pytest.mark.parametrize("channel_binding", CHANNEL_BINDINGS)
def test_verify_ca_checks_chain(host: str, channel_binding: str | None) -> None:
    context = ssl_context(neon_url(host=host, sslmode="verify-ca", channel_binding=channel_binding))
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("host", [POOLER_HOST, DIRECT_HOST])
@pytest.mark.parametrize("channel_binding", CHANNEL_BINDINGS)
def test_require_always_encrypts(scheme: str, host: str, channel_binding: str | None) -> None:
    # An SSL context (not asyncpg's "prefer" string) makes asyncpg reject a plain-text fallback.
    context = ssl_context(neon_url(scheme, host, sslmode="require", channel_binding=channel_binding))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_verifying_modes_allow_no_old_tls(sslmode: str) -> None:
    context = ssl_context(neon_url(sslmode=sslmode))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_last_sslmode_wins_as_in_libpq() -> None:
    context = ssl_context(neon_url(sslmode="disable") + "&sslmode=verify-full")
    assert context.check_hostname is True


@pytest.mark.parametrize("sslmode", ["REQUIRE", "required", "true"])
def test_misspelled_sslmode_is_an_error_not_a_default(sslmode: str) -> None:
    with pytest.raises(ConfigurationError, match="sslmode"):
        database_config(neon_url(sslmode=sslmode))


# --- sslrootcert --------------------------------------------------------------------------------


def test_sslrootcert_system_with_verify_full_checks_host_name() -> None:
    context = ssl_context(neon_url(sslmode="verify-full", sslrootcert="system"))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_sslrootcert_system_implies_verify_full() -> None:
    context = ssl_context(neon_url(sslrootcert="system"))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.mark.parametrize("sslmode", ["disable", "allow", "prefer", "require", "verify-ca"])
def test_sslrootcert_system_rejects_weaker_mode(sslmode: str) -> None:
    with pytest.raises(ConfigurationError, match="sslrootcert=system"):
        database_config(neon_url(sslmode=sslmode, sslrootcert="system"))


def test_sslrootcert_file_is_loaded_for_verify_full(ca_file: tuple[Path, str]) -> None:
    path, name = ca_file
    context = ssl_context(neon_url(sslmode="verify-full", sslrootcert=str(path)))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert name in loaded_ca_names(context)


def test_sslrootcert_file_is_loaded_for_verify_ca(ca_file: tuple[Path, str]) -> None:
    path, name = ca_file
    context = ssl_context(neon_url(sslmode="verify-ca", sslrootcert=str(path)))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert name in loaded_ca_names(context)


def test_sslrootcert_file_makes_require_verify_the_chain(ca_file: tuple[Path, str]) -> None:
    # libpq: "If a root certificate file exists, sslmode=require behaves like verify-ca".
    path, name = ca_file
    context = ssl_context(neon_url(sslmode="require", sslrootcert=str(path)))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert name in loaded_ca_names(context)


def test_missing_sslrootcert_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="sslrootcert") as caught:
        database_config(neon_url(sslmode="verify-full", sslrootcert=str(tmp_path / "absent.crt")))
    assert PASSWORD not in str(caught.value)


# --- channel_binding ----------------------------------------------------------------------------


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
@pytest.mark.parametrize("channel_binding", ["disable", "prefer", "require"])
def test_channel_binding_leaves_tls_as_given(sslmode: str, channel_binding: str) -> None:
    without = ssl_context(neon_url(sslmode=sslmode))
    with_binding = ssl_context(neon_url(sslmode=sslmode, channel_binding=channel_binding))
    assert (with_binding.verify_mode, with_binding.check_hostname) == (without.verify_mode, without.check_hostname)


def test_channel_binding_require_alone_still_demands_tls() -> None:
    # Channel binding exists only over TLS, so libpq fails rather than connect in plain text.
    context = ssl_context(neon_url(channel_binding="require"))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_channel_binding_require_rejects_disable() -> None:
    with pytest.raises(ConfigurationError, match="channel_binding"):
        database_config(neon_url(sslmode="disable", channel_binding="require"))


# --- the pooler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_pooler_host_turns_off_statement_caches(scheme: str) -> None:
    config = database_config(neon_url(scheme, POOLER_HOST, sslmode="require"))
    assert config.pooler is True
    assert config.connect_args["statement_cache_size"] == 0
    assert config.url.query["prepared_statement_cache_size"] == "0"


def test_pooler_statement_names_are_unique() -> None:
    name_for = database_config(neon_url(sslmode="require")).connect_args["prepared_statement_name_func"]
    names = {name_for() for _ in range(1_000)}
    assert len(names) == 1_000
    assert all(name.startswith("__asyncpg_") for name in names)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_direct_host_keeps_statement_caches(scheme: str) -> None:
    config = database_config(neon_url(scheme, DIRECT_HOST, sslmode="require"))
    assert config.pooler is False
    assert "statement_cache_size" not in config.connect_args
    assert "prepared_statement_name_func" not in config.connect_args
    assert "prepared_statement_cache_size" not in config.url.query


@pytest.mark.parametrize("flag", ["true", "1"])
def test_pgbouncer_flag_marks_any_host_as_pooled(flag: str) -> None:
    config = database_config(neon_url(host=DIRECT_HOST, sslmode="require", pgbouncer=flag))
    assert config.pooler is True
    assert config.connect_args["statement_cache_size"] == 0
    # The flag is ours, not a server setting: it must not reach asyncpg.
    assert "pgbouncer" not in config.url.query


def test_pooler_environment_variable_marks_any_host_as_pooled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOLER_ENV, "1")
    assert database_config(neon_url(host=DIRECT_HOST, sslmode="require")).pooler is True


def test_host_merely_containing_pooler_is_not_pooled() -> None:
    assert database_config(neon_url(host="poolerdb.example.com", sslmode="require")).pooler is False


# --- options, timeouts, names, unknown parameters ----------------------------------------------


def test_neon_endpoint_option_not_forwarded() -> None:
    config = database_config(neon_url(sslmode="require", options="endpoint%3Dep-cool-darkness-123456"))
    assert "endpoint" not in config.connect_args.get("server_settings", {})


def test_options_settings_become_server_settings() -> None:
    config = database_config(
        neon_url(sslmode="require", options="endpoint%3Dep-x%20-c%20statement_timeout%3D5000%20-csearch_path%3Dapp")
    )
    settings = config.connect_args["server_settings"]
    assert settings == {"statement_timeout": "5000", "search_path": "app"}


def test_connect_timeout_sets_the_connect_timeout() -> None:
    assert database_config(neon_url(sslmode="require", connect_timeout="15")).connect_args["timeout"] == 15.0


@pytest.mark.parametrize("value", ["abc", "-1", "0"])
def test_bad_connect_timeout_rejected(value: str) -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        database_config(neon_url(sslmode="require", connect_timeout=value))


def test_application_name_becomes_a_server_setting() -> None:
    config = database_config(neon_url(sslmode="require", application_name="my%20agent"))
    assert config.connect_args["server_settings"]["application_name"] == "my agent"


def test_full_neon_console_url() -> None:
    url = neon_url(
        sslmode="require",
        channel_binding="require",
        options="endpoint%3Dep-cool-darkness-123456",
        application_name="taskstore",
        connect_timeout="15",
    )
    config = database_config(url)
    assert isinstance(config.connect_args["ssl"], ssl.SSLContext)
    assert config.connect_args["timeout"] == 15.0
    assert config.connect_args["server_settings"] == {"application_name": "taskstore"}
    assert config.pooler is True


@pytest.mark.parametrize("parameter", ["ssl=true", "sslcert=client.crt", "sslnegotiation=direct", "keepalives=1"])
def test_unknown_parameter_rejected_by_name(parameter: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        database_config(neon_url(sslmode="require") + "&" + parameter)
    assert parameter.split("=")[0] in str(caught.value)
    assert PASSWORD not in str(caught.value)


# --- a real connection through the same code path ----------------------------------------------


def _local(test_url: str, query: str) -> str:
    base = make_url(test_url).set(drivername="postgresql")
    return base.render_as_string(hide_password=False) + "?" + query


@pytest.mark.postgres
async def test_real_connection_neon_parameters(postgres_databases) -> None:  # type: ignore[no-untyped-def]
    url = _local(
        postgres_databases.admin_url,
        "sslmode=disable&application_name=neon-url-test&connect_timeout=5&pgbouncer=true"
        "&options=endpoint%3Dep-x%20-c%20statement_timeout%3D4321",
    )
    config = database_config(url)
    engine = create_engine(config, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            rows = []
            # The same parameterized statement three times: with the pooler settings each
            # run prepares under a new name and none is cached.
            for number in range(3):
                query = text("SELECT current_setting('application_name'), current_setting('statement_timeout'), CAST(:n AS integer)")
                rows.append((await connection.execute(query, {"n": number})).one())
    finally:
        await engine.dispose()
    assert config.pooler is True
    assert [tuple(row) for row in rows] == [("neon-url-test", "4321ms", number) for number in range(3)]


async def _select_one(url: str) -> int:
    """Run ``SELECT 1`` in a store transaction on an engine made from ``url``."""
    database = Database(create_engine(database_config(url), pool_size=1, max_overflow=0))
    try:
        async with database.transaction("neon-url-test", "probe") as connection:
            return (await connection.execute(text("SELECT 1"))).scalar_one()
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_real_connection_prefer_without_tls(postgres_databases) -> None:  # type: ignore[no-untyped-def]
    assert await _select_one(_local(postgres_databases.admin_url, "sslmode=prefer")) == 1


@pytest.mark.postgres
async def test_real_connection_require_needs_tls(postgres_databases) -> None:  # type: ignore[no-untyped-def]
    # The local server has TLS off, so a connection that honours "require" cannot be made.
    with pytest.raises(DatabaseUnavailable):
        await _select_one(_local(postgres_databases.admin_url, "sslmode=require&connect_timeout=5"))
