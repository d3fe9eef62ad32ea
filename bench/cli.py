"""``python -m bench``: build or reuse the data set, run every workload, print and write the results."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg

from bench import data, report
from bench.profiles import FULL, QUICK, SMOKE
from bench.workloads import Bench, log, run_all

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS_PATH = Path(__file__).with_name("RESULTS.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="Small data set in taskstore_bench_quick; a few minutes.")
    mode.add_argument("--smoke", action="store_true", help="Tiny data set, one repeat: proves the harness works.")
    parser.add_argument(
        "--server-url", default=DEFAULT_SERVER_URL,
        help="PostgreSQL on this machine, as a user that may create databases and roles (default: %(default)s).",
    )
    parser.add_argument("--database", help="Name of the benchmark database (default: by mode).")
    parser.add_argument("--rebuild", action="store_true", help="Generate the data set again even if it exists.")
    parser.add_argument("--drop", action="store_true", help="Drop the database, its role and the SQLite file afterwards.")
    parser.add_argument("--no-sqlite", action="store_true", help="Skip the SQLite workloads.")
    parser.add_argument(
        "--render", type=Path, metavar="JSON",
        help="Only write the results again from the JSON a run saved (after editing bench/notes.md).",
    )
    parser.add_argument(
        "--output", type=Path, default=None,
        help="Where to write the results (default: bench/RESULTS.md for the full mode, else nothing).",
    )
    return parser


async def _run(args: argparse.Namespace) -> int:
    profile = FULL
    if args.smoke:
        profile = SMOKE
    elif args.quick:
        profile = QUICK
    if args.render is not None:
        bench, command, started_at, elapsed = report.load(args.render, profile)
        output = args.output or RESULTS_PATH
        output.write_text(report.render(bench, command, started_at, elapsed))
        log(f"wrote {output}")
        return 0
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    database = args.database or profile.database
    sqlite_dir = Path(tempfile.gettempdir()) / "taskstore-bench"
    log(f"data set {profile.name}: database {database}")
    dataset = await data.ensure_postgres(profile, args.server_url, database=database, rebuild=args.rebuild)
    log("data set " + (f"generated in {dataset.generated_seconds:.1f} s" if dataset.generated_seconds else "reused"))
    if profile.sqlite_users and not args.no_sqlite:
        dataset.sqlite_path, dataset.sqlite_generated_seconds = await data.ensure_sqlite(
            profile, sqlite_dir, database, rebuild=args.rebuild
        )
    data_dir = Path(tempfile.mkdtemp(prefix="taskstore-bench-"))
    bench = Bench(dataset=dataset, data_dir=data_dir)
    try:
        connection = await asyncpg.connect(dataset.admin_dsn)
        try:
            bench.facts["postgres_version"] = (await connection.fetchval("SELECT version()")).split(" on ")[0]
        finally:
            await connection.close()
        await run_all(bench)
    except BaseException:
        log(f"server logs kept in {data_dir}")
        raise
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        if args.drop:
            await data.drop_postgres(args.server_url, database)
            if dataset.sqlite_path is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{dataset.sqlite_path}{suffix}").unlink(missing_ok=True)

    report.print_summary(bench)
    output = args.output
    if output is None and profile is FULL:
        output = RESULTS_PATH
    if output is not None:
        command = ("python -m bench " + shlex.join(sys.argv[1:])).strip()
        elapsed = time.perf_counter() - started
        output.write_text(report.render(bench, command, started_at, elapsed))
        report.save(output.with_suffix(".json"), bench, command, started_at, elapsed)
        log(f"wrote {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return anyio.run(_run, args)
