"""The printed table, the targets with PASS/MISS, and bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url

from bench.data import Dataset
from bench.measure import Result
from bench.profiles import Profile
from bench.workloads import Bench, http_name

MB = 1024 * 1024
RSS_LIMIT_MB = 150


@dataclass(frozen=True)
class Target:
    name: str
    rule: str
    measured: float | None
    limit: float
    at_most: bool  # True: measured <= limit passes; False: measured >= limit passes
    basis: str

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        if self.limit == float("inf"):
            return "info"
        passed = self.measured <= self.limit if self.at_most else self.measured >= self.limit
        return "PASS" if passed else "MISS"


def _ratio(bench: Bench, top: str, bottom: str, field: str) -> float | None:
    a, b = bench.results.get(top), bench.results.get(bottom)
    if a is None or b is None or getattr(b, field) == 0:
        return None
    return getattr(a, field) / getattr(b, field)


def targets(bench: Bench) -> list[Target]:
    profile = bench.profile
    sessions = profile.sessions
    small, large = min(profile.growth_sizes), max(profile.growth_sizes)
    chat_small, chat_large = min(profile.conversation_sizes), max(profile.conversation_sizes)
    rows = [
        Target("store list vs raw asyncpg", "p50 ratio <= 1.3",
               _ratio(bench, "W1 list: store get_active_tasks", "W1 list: raw asyncpg (one statement)", "p50_ms"), 1.3, True,
               "W1 store get_active_tasks / raw asyncpg, same SQL"),
        Target("(context) store list vs raw asyncpg in the same transaction", "p50 ratio, no target",
               _ratio(bench, "W1 list: store get_active_tasks", "W1 list: raw asyncpg in the store's transaction", "p50_ms"),
               float("inf"), True, "what SQLAlchemy and the row conversion add to BEGIN, set_config, the list, COMMIT"),
        Target("store insert vs raw asyncpg", "p50 ratio <= 1.3",
               _ratio(bench, "W2 insert: store create_task", "W2 insert: raw asyncpg (one statement)", "p50_ms"), 1.3, True,
               "W2 store create_task / raw asyncpg INSERT, same SQL"),
    ]
    for label in ("stateful", "stateless JSON"):
        for validate in (True, False):
            client = "SDK client" if validate else "client without output validation"
            rows.append(Target(
                f"list_tasks vs no-op tool, HTTP {label}, {sessions} sessions, {client}", "throughput ratio >= 0.8",
                _ratio(bench, http_name(f"list_tasks, {label}", sessions, validate),
                       http_name(f"no-op tool, {label}", sessions, validate), "throughput"),
                0.8, False, "calls/s of list_tasks / calls/s of the no-op tool, same transport and client"))
    rows.append(Target(
        f"(context) list_tasks vs a fixed 20-task page without database, HTTP stateless JSON, {sessions} sessions",
        "throughput ratio, no target",
        _ratio(bench, http_name("list_tasks, stateless JSON", sessions, False),
               http_name("fixed 20-task page without database, stateless JSON", sessions, False), "throughput"),
        float("inf"), True, "the share of the database and the store, client without output validation"))
    rows += [
        Target(f"list_tasks growth {large:,} vs {small:,} tasks", "p50 ratio <= 1.2",
               _ratio(bench, f"W3 list_tasks first page, {large:,} tasks: store", f"W3 list_tasks first page, {small:,} tasks: store", "p50_ms"),
               1.2, True, "store, first page of 20"),
        Target(f"get_history growth {chat_large:,} vs {chat_small:,} messages", "p50 ratio <= 1.2",
               _ratio(bench, f"W3 get_history(limit=50), {chat_large:,} messages: store", f"W3 get_history(limit=50), {chat_small:,} messages: store", "p50_ms"),
               1.2, True, "store, latest 50"),
        Target(f"list_tasks deep page vs first page ({large:,} tasks)", "p50 ratio <= 1.2",
               _ratio(bench, f"W3 list_tasks deep page, {large:,} tasks: store", f"W3 list_tasks first page, {large:,} tasks: store", "p50_ms"),
               1.2, True, "store, cursor at the last page"),
        Target(f"(context) list_tasks deep page at {large:,} tasks vs first page at {small:,}", "p50 ratio, no target",
               _ratio(bench, f"W3 list_tasks deep page, {large:,} tasks: store", f"W3 list_tasks first page, {small:,} tasks: store", "p50_ms"),
               float("inf"), True, "a deep page measured against a first page that does not grow with the user"),
        Target(f"get_history deep page vs latest ({chat_large:,} messages)", "p50 ratio <= 1.2",
               _ratio(bench, f"W3 get_history deep page, {chat_large:,} messages: store", f"W3 get_history(limit=50), {chat_large:,} messages: store", "p50_ms"),
               1.2, True, "store, before cursor near the oldest message"),
    ]
    peak = max(bench.facts.get("rss_under_load", 0), bench.facts.get("rss_under_write_load", 0))
    rows.append(Target(f"server RSS under {sessions} sessions", f"<= {RSS_LIMIT_MB} MB", peak / MB if peak else None,
                       RSS_LIMIT_MB, True, "peak RSS of the stateful server process (psutil) during W1 and W2 over HTTP"))
    mismatches = bench.facts.get("replica_mismatches")
    rows.append(Target("two replicas return what one returns", "0 differing pages",
                       float(mismatches) if mismatches is not None else None, 0, True,
                       f"{bench.facts.get('replica_pages_compared', 0)} list_tasks pages compared"))
    return rows


def results_table(bench: Bench) -> list[str]:
    lines = [
        "| measurement | concurrency | p50 ms | p99 ms | calls/s | server CPU ms/call | calls (all repeats) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in bench.results.values():
        cpu = "" if result.server_cpu_ms is None else f"{result.server_cpu_ms:.3f}"
        lines.append(
            f"| {result.name} | {result.concurrency} | {result.p50_ms:.3f} | {result.p99_ms:.3f} | "
            f"{result.throughput:,.0f} | {cpu} | {result.calls:,} |"
        )
    return lines


def targets_table(bench: Bench) -> list[str]:
    lines = ["| target | rule | measured | verdict | basis |", "| --- | --- | ---: | --- | --- |"]
    for target in targets(bench):
        measured = "n/a" if target.measured is None else f"{target.measured:.2f}"
        lines.append(f"| {target.name} | {target.rule} | {measured} | {target.verdict} | {target.basis} |")
    return lines


def machine(bench: Bench) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ", ".join(f"{name} {version(name)}" for name in ("mcp", "sqlalchemy", "asyncpg", "pydantic", "uvicorn"))
    return [
        f"- CPUs (nproc): {os.cpu_count()}; CPU model: {cpu}",
        f"- Memory: {psutil.virtual_memory().total / 1024**3:.1f} GiB",
        f"- Python {platform.python_version()} on {platform.platform()}",
        f"- {bench.facts.get('postgres_version', 'PostgreSQL: unknown')}",
        f"- Packages: {packages}",
    ]


def render(bench: Bench, command: str, started: datetime, elapsed: float) -> str:
    profile = bench.profile
    dataset = bench.dataset
    if dataset.generated_seconds is not None:
        generated = f"generated in this run in {dataset.generated_seconds:.0f} s (COPY, then VACUUM ANALYZE)"
    elif dataset.reused_generation_seconds is not None:
        generated = f"reused from an earlier run (its marker matched), which generated it in {dataset.reused_generation_seconds:.0f} s"
    else:
        generated = "reused from an earlier run (its marker matched)"
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}`, {profile.name} mode, started {started:%Y-%m-%d %H:%M} UTC, took {elapsed:.0f} s.",
        "",
        "## Machine",
        "",
        *machine(bench),
        "",
        "Client, servers and PostgreSQL share this machine's CPUs, so absolute numbers move with load;",
        "every floor is measured in the same run, interleaved with the product, and the targets are ratios.",
        "",
        "## Data set",
        "",
        f"- PostgreSQL database `{dataset.admin_url.database}`, {generated}.",
        f"- {profile.users:,} users with {profile.tasks_per_user} tasks each; growth users with "
        f"{', '.join(f'{size:,}' for size in profile.growth_sizes)} tasks; one user's conversations with "
        f"{', '.join(f'{size:,}' for size in profile.conversation_sizes)} messages. Rows of all users are interleaved "
        "(shuffled before COPY); 30% of tasks completed, 5% deleted.",
        "- The product connects as a login role that owns nothing, so row-level security applies; "
        "the raw floors connect as `postgres`, which bypasses it.",
    ]
    if dataset.sqlite_path is not None:
        lines.append(f"- SQLite file with {profile.sqlite_users:,} users and the growth users.")
    lines += [
        "",
        "## Targets",
        "",
        *targets_table(bench),
        "",
        "## Measurements",
        "",
        f"Each figure is the median over {profile.repeats} repeat(s); a repeat is at most {profile.sequential_calls:,} "
        f"sequential calls or {profile.concurrent_calls:,} concurrent calls, and at most {profile.seconds_per_run:.0f} s. "
        "p50 and p99 are per-call latencies seen by the caller; calls/s is calls divided by the run's wall time.",
        "",
        *results_table(bench),
        "",
        "## Memory",
        "",
        f"- Stateful server RSS at rest (after start, before any call): {bench.facts.get('rss_at_rest', 0) / MB:.1f} MB",
        f"- Peak RSS during W1 over HTTP ({profile.sessions} sessions included): {bench.facts.get('rss_under_load', 0) / MB:.1f} MB",
        f"- Peak RSS during W2 ({profile.sessions} writing sessions): {bench.facts.get('rss_under_write_load', 0) / MB:.1f} MB",
        "",
        "## What the layers cost",
        "",
        "The list statement every W1 layer runs (captured from the store, sent unchanged by the raw floor):",
        "",
        "```sql",
        str(bench.facts.get("list_sql", "")).strip(),
        "```",
    ]
    for note in bench.notes:
        lines += ["", note]
    notes_file = Path(__file__).with_name("notes.md")
    if notes_file.exists():
        lines += ["", notes_file.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def print_summary(bench: Bench) -> None:
    print()
    print("\n".join(results_table(bench)))
    print()
    print("\n".join(targets_table(bench)))
    sys.stdout.flush()


def save(path: Path, bench: Bench, command: str, started: datetime, elapsed: float) -> None:
    """Keep what a run measured, so the report can be written again without measuring."""
    dataset = bench.dataset
    payload = {
        "command": command,
        "started": started.isoformat(),
        "elapsed": elapsed,
        "database": dataset.admin_url.render_as_string(hide_password=True),
        "app_url": dataset.app_url.render_as_string(hide_password=True),
        "generated_seconds": dataset.generated_seconds,
        "reused_generation_seconds": dataset.reused_generation_seconds,
        "sqlite": str(dataset.sqlite_path) if dataset.sqlite_path else None,
        "results": [asdict(result) for result in bench.results.values()],
        "facts": bench.facts,
        "notes": bench.notes,
    }
    path.write_text(json.dumps(payload, indent=1, default=str))


def load(path: Path, profile: Profile) -> tuple[Bench, str, datetime, float]:
    payload = json.loads(path.read_text())
    dataset = Dataset(
        profile=profile,
        admin_url=make_url(payload["database"]),
        app_url=make_url(payload["app_url"]),
        users=[],
        growth_users={},
        conversations={},
        generated_seconds=payload["generated_seconds"],
        reused_generation_seconds=payload.get("reused_generation_seconds"),
        sqlite_path=Path(payload["sqlite"]) if payload["sqlite"] else None,
    )
    bench = Bench(dataset=dataset, data_dir=path.parent, facts=payload["facts"], notes=payload["notes"])
    for item in payload["results"]:
        bench.results[item["name"]] = Result(**item)
    return bench, payload["command"], datetime.fromisoformat(payload["started"]), payload["elapsed"]
