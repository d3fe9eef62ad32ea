"""Command-line parsing: durations, ports, log levels and settings taken from the environment."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Iterator

import pytest

from server.cli import _strip_bearer, build_parser, main, parse_duration, parse_port
from server.settings import Settings


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    """main() configures the root logger and SIGTERM for the process; put back pytest's own."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sigterm = signal.getsignal(signal.SIGTERM)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    signal.signal(signal.SIGTERM, sigterm)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("30d", 2_592_000)])
def test_duration_with_unit(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "0d", "-1h", "1w", "1.5h", "", "36501d", "999999999d"])
def test_duration_rejected(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["-1", "65536", "99999", "http"])
def test_port_rejected(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_port(text)


def test_log_level_after_subcommand() -> None:
    args = build_parser().parse_args(["serve", "--log-level", "debug"])
    assert args.log_level == "DEBUG"


def test_log_level_before_subcommand_kept() -> None:
    args = build_parser().parse_args(["--log-level", "warning", "db", "current"])
    assert args.log_level == "WARNING"


@pytest.mark.parametrize("flags", [["--port", "9000"], ["--host", "0.0.0.0"], ["--stateless"], ["--json-response"]])
def test_stdio_rejects_http_options(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", *flags])
    error = capsys.readouterr().err
    assert code == 1
    assert "applies to HTTP only" in error
    assert "--transport streamable-http" in error


@pytest.mark.parametrize(
    ("pasted", "token"),
    [("eyJ.a.b", "eyJ.a.b"), ("Bearer eyJ.a.b", "eyJ.a.b"), ("  bearer   eyJ.a.b ", "eyJ.a.b"), ("Bearer", "Bearer")],
)
def test_stdio_token_bearer_prefix(pasted: str, token: str) -> None:
    assert _strip_bearer(pasted) == token


@pytest.mark.parametrize(
    ("value", "hosts"),
    [("a.example:*", ["a.example:*"]), ("a.example, b.example:443", ["a.example", "b.example:443"]),
     ('["a.example:*"]', ["a.example:*"]), ("", [])],
)
def test_allowed_hosts_from_environment(monkeypatch: pytest.MonkeyPatch, value: str, hosts: list[str]) -> None:
    monkeypatch.setenv("TASKSTORE_ALLOWED_HOSTS", value)
    assert Settings().allowed_hosts == hosts


def test_invalid_log_level_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKSTORE_LOG_LEVEL", "verbose")
    code = main(["db", "current"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1
    assert "TASKSTORE_LOG_LEVEL" in error


def test_empty_scope_rejected(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKSTORE_DATA_DIR", str(tmp_path))
    code = main(["token", "issue", "--user", "bob", "--scope", ""])
    captured = capsys.readouterr()
    assert code == 1
    assert "invalid --scope" in captured.err
    assert captured.out == ""
