"""The ``taskstore`` command: help texts, development tokens, schema commands and error messages."""

from __future__ import annotations

import argparse
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import jwt
import pytest

from server.auth.dev_issuer import DEV_AUDIENCE, DEV_ISSUER, KEY_FILE, DevIssuer
from server.cli import build_parser
from store import migrate
from tests.support.servers import run_cli, server_env

TASKSTORE = Path(sys.executable).with_name("taskstore")
HEAD = migrate.head_revision()


def taskstore(data_dir: Path, *args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``taskstore`` entry point, as a user would."""
    return subprocess.run(
        [str(TASKSTORE), *args], env=server_env(data_dir, database_url), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("taskstore:")]


# --- help ----------------------------------------------------------------------------------------


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], list[str]]]:
    """Each command path with the words its --help must show: options, positionals, subcommands."""
    words: list[str] = []
    found: list[tuple[tuple[str, ...], list[str]]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                words.append(name)
                found += commands(subparser, (*path, name))
        elif action.option_strings:
            words += action.option_strings
        else:
            words.append(action.metavar or action.dest)
    return [(path, words), *found]


COMMANDS = commands(build_parser())


def help_text(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*path, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_installed_entry_point_prints_help(tmp_path):
    result = taskstore(tmp_path, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: taskstore")


@pytest.mark.parametrize(("path", "words"), COMMANDS, ids=[" ".join(path) or "taskstore" for path, _ in COMMANDS])
def test_help_mentions_every_option(capsys, path, words):
    text = help_text(path, capsys)
    assert [word for word in words if word not in text] == []


def test_help_covers_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"serve", "db upgrade", "db downgrade", "db current", "db check", "db purge", "token issue"} <= names


@pytest.mark.parametrize("ttl", ["0", "-5m", "soon"])
def test_token_issue_rejects_an_invalid_ttl(capsys, ttl):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["token", "issue", "--user", "alice", f"--ttl={ttl}"])
    assert exited.value.code == 2
    assert "invalid duration" in capsys.readouterr().err


def test_token_issue_requires_a_user(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["token", "issue"])
    assert exited.value.code == 2
    assert "--user" in capsys.readouterr().err


# --- token issue ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two tokens from a new data directory, with the key file as it was after each."""
    data_dir = tmp_path_factory.mktemp("tokens") / "data"
    first = taskstore(data_dir, "token", "issue", "--user", "alice")
    key_after_first = (data_dir / KEY_FILE).read_bytes()
    second = taskstore(data_dir, "token", "issue", "--user", "bob", "--ttl", "15m", "--scope", "tasks:read")
    return {"data_dir": data_dir, "first": first, "second": second, "key_after_first": key_after_first}


def verified_claims(data_dir: Path, token: str) -> dict[str, object]:
    public_key = jwt.PyJWK(DevIssuer.load_or_create(data_dir).public_jwk()).key
    return jwt.decode(token, public_key, algorithms=["EdDSA"], audience=DEV_AUDIENCE, issuer=DEV_ISSUER)


def test_token_issue_prints_only_the_token(issued):
    assert issued["first"].returncode == 0
    assert len(issued["first"].stdout.splitlines()) == 1
    assert issued["first"].stdout.count(".") == 2


def test_token_issue_sub_is_the_user(issued):
    claims = verified_claims(issued["data_dir"], issued["first"].stdout.strip())
    assert claims["sub"] == "alice"
    assert claims["scope"] == "tasks:read tasks:write"
    assert claims["exp"] - claims["iat"] == 3600


def test_token_issue_honours_ttl_and_scope(issued):
    claims = verified_claims(issued["data_dir"], issued["second"].stdout.strip())
    assert claims["sub"] == "bob"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["scope"] == "tasks:read"


def test_dev_key_file_mode_is_0600(issued):
    assert stat.S_IMODE((issued["data_dir"] / KEY_FILE).stat().st_mode) == 0o600


def test_data_directory_is_private_to_its_owner(issued):
    assert stat.S_IMODE(issued["data_dir"].stat().st_mode) & 0o077 == 0


def test_dev_key_is_reused_by_later_tokens(issued):
    assert (issued["data_dir"] / KEY_FILE).read_bytes() == issued["key_after_first"]


# --- db commands on a fresh database -------------------------------------------------------------


@pytest.fixture(scope="module")
async def db_run(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Walk a new, empty database through every schema command once; each test reads one step."""
    data_dir = tmp_path_factory.mktemp(f"db-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{data_dir / 'fresh.db'}"
    else:
        url = await request.getfixturevalue("postgres_databases").create("taskstore_cli")
    steps = {
        "empty": ("current",),
        "unknown revision": ("upgrade", "nosuchrevision"),
        "upgrade": ("upgrade",),
        "at head": ("current",),
        "check": ("check",),
        "purge": ("purge", "--older-than", "30d"),
        "downgrade": ("downgrade", "base"),
        "downgraded": ("current",),
    }
    return {step: run_cli(data_dir, url, "db", *args) for step, args in steps.items()}


def test_db_current_on_an_empty_database_exits_1(db_run):
    assert db_run["empty"].returncode == 1
    assert db_run["empty"].stdout.strip() == f"none (behind head {HEAD})"


def test_db_upgrade_unknown_revision_fails_cleanly(db_run):
    result = db_run["unknown revision"]
    assert result.returncode == 1
    assert len(error_lines(result)) == 1
    assert "nosuchrevision" in error_lines(result)[0]
    assert "Traceback" not in result.stderr


def test_db_upgrade_brings_the_database_to_head(db_run):
    assert db_run["upgrade"].returncode == 0
    assert db_run["upgrade"].stdout.strip().endswith(f"is at revision {HEAD}")
    assert db_run["at head"].returncode == 0
    assert db_run["at head"].stdout.strip() == f"{HEAD} (at head)"


def test_db_output_names_the_database_without_credentials(db_run, backend):
    assert db_run["upgrade"].stdout.startswith("postgresql database" if backend == "postgres" else "sqlite file")
    assert "://" not in db_run["upgrade"].stdout


def test_db_check_finds_no_differences_at_head(db_run):
    assert db_run["check"].returncode == 0
    assert "no differences" in db_run["check"].stdout


def test_db_purge_on_an_empty_database_removes_nothing(db_run):
    assert db_run["purge"].returncode == 0
    assert "removed 0 tasks, 0 conversations and 0 messages" in db_run["purge"].stdout


def test_db_downgrade_to_base_empties_the_schema(db_run):
    assert db_run["downgrade"].returncode == 0
    assert "base (empty)" in db_run["downgrade"].stdout
    assert db_run["downgraded"].returncode == 1
    assert db_run["downgraded"].stdout.startswith("none")


# --- configuration errors ------------------------------------------------------------------------

BAD_URLS = [
    ("not a url", "not a valid database URL"),
    ("mysql://user@127.0.0.1/db", "unsupported database URL scheme 'mysql'"),
    ("sqlite:///:memory:", "in-memory SQLite"),
]


@pytest.mark.parametrize(("url", "explanation"), BAD_URLS, ids=["garbage", "mysql", "memory"])
def test_db_invalid_database_url_fails_cleanly(tmp_path, url, explanation):
    result = run_cli(tmp_path, url, "db", "current")
    assert result.returncode == 1
    assert error_lines(result) == [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines(result)) == 1
    assert explanation in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_invalid_database_url_fails_cleanly(tmp_path):
    result = run_cli(tmp_path, BAD_URLS[0][0], "serve", TASKSTORE_TOKEN="unused")
    assert result.returncode == 1
    assert error_lines(result) == [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines(result)) == 1
    assert BAD_URLS[0][1] in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def unreachable_database(postgres_databases) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    # Trust authentication accepts any password, so the database name is what must fail.
    name = f"taskstore_missing_{uuid.uuid4().hex[:8]}"
    return f"postgresql://postgres:secretpw@127.0.0.1:5432/{name}", name


@pytest.mark.parametrize("command", [("db", "current"), ("db", "upgrade"), ("serve",)], ids=["current", "upgrade", "serve"])
def test_postgres_login_failure_hides_password(tmp_path, unreachable_database, command):
    url, name = unreachable_database
    token = DevIssuer.load_or_create(tmp_path).issue("someone", 3600)
    result = run_cli(tmp_path, url, *command, TASKSTORE_TOKEN=token)
    assert result.returncode == 1
    assert len(error_lines(result)) == 1
    assert "127.0.0.1" in error_lines(result)[0]
    assert name in error_lines(result)[0]
    assert "secretpw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_postgres_connection_refused_hides_password(tmp_path):
    result = run_cli(tmp_path, "postgresql://postgres:secretpw@127.0.0.1:1/taskstore", "db", "current")
    assert result.returncode == 1
    assert len(error_lines(result)) == 1
    assert "127.0.0.1:1" in error_lines(result)[0]
    assert "secretpw" not in result.stderr
    assert "Traceback" not in result.stderr
