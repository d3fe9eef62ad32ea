"""Cost of the store methods and of list_tasks in process, for the code on the import path.

It prints one JSON object: per method, the median over three repeats of the p50 latency and of
the process CPU time per call, in milliseconds. Run it from two checkouts against the same
benchmark database to compare a change (this is how bench/notes.md's before/after figures
were taken):

    python -m bench.layers                        # the work tree
    cd /tmp && PYTHONPATH=/path/to/old/checkout python -m bench.layers   # bench/ must be importable too

The database must exist (``python -m bench`` makes it). Rows written by create_task are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import time
import warnings

import asyncpg

CALLS = 800
REPEATS = 3


async def measure(database: str, calls: int) -> dict[str, tuple[float, float]]:
    from mcp.server.auth.middleware.auth_context import auth_context_var
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    from server.app import build_server
    from server.services import Services
    from server.tools import ToolContext
    from store import ConversationRepository, Database, TaskRepository, create_engine, database_config

    url = f"postgresql://{database}_app@127.0.0.1:5432/{database}"
    db = Database(create_engine(database_config(url)))
    tasks, conversations = TaskRepository(db), ConversationRepository(db)
    server = build_server(ToolContext(services=Services(db, tasks, conversations, database_config(url))))
    logging.getLogger().setLevel(logging.ERROR)
    # An older checkout may warn on every serialization; the warning text is not what is compared.
    warnings.simplefilter("ignore")
    token = AccessToken(
        token="layers", client_id="layers", scopes=["tasks:read", "tasks:write"],
        expires_at=int(time.time()) + 3600, subject="bench-user-00001",
    )
    auth_context_var.set(AuthenticatedUser(token))
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    users = [row[0] for row in await admin.fetch("SELECT DISTINCT user_id FROM task WHERE user_id LIKE 'bench-user-%' LIMIT 1000")]
    history = await admin.fetchval("SELECT id FROM conversation ORDER BY id LIMIT 1")
    rng = random.Random(3)
    counter = iter(range(10**9))
    variants = {
        "store get_active_tasks": lambda: tasks.get_active_tasks(rng.choice(users), {"status": "pending"}, limit=20),
        "store create_task": lambda: tasks.create_task(f"bench-writer-{next(counter) % 16}", {"title": "layers"}),
        "store get_history(50)": lambda: conversations.get_history("bench-chat", history, limit=50),
        "tool list_tasks (server.call_tool)": lambda: server.call_tool("list_tasks", {"limit": 20}),
    }
    results: dict[str, tuple[float, float]] = {}
    try:
        for name, call in variants.items():
            cpu: list[float] = []
            p50: list[float] = []
            for _ in range(REPEATS):
                for _ in range(50):
                    await call()
                latencies = []
                started = time.process_time()
                for _ in range(calls):
                    before = time.perf_counter()
                    await call()
                    latencies.append(time.perf_counter() - before)
                cpu.append((time.process_time() - started) / calls * 1000)
                latencies.sort()
                p50.append(latencies[len(latencies) // 2] * 1000)
            results[name] = (round(statistics.median(p50), 3), round(statistics.median(cpu), 3))
    finally:
        await admin.execute("DELETE FROM task WHERE user_id LIKE 'bench-writer-%'")
        await admin.close()
        await db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="taskstore_bench", help="Benchmark database (default: %(default)s).")
    parser.add_argument("--calls", type=int, default=CALLS, help="Calls per repeat (default: %(default)s).")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.database, args.calls))))


if __name__ == "__main__":
    main()
