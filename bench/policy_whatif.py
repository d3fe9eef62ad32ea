"""Measure how the row-level security policies shape the plan of the list query, then roll back.

Permissive policies are combined with OR. An owner policy plus purge policies would make every
query of the application role carry ``(purge mode AND deleted) OR user_id = setting``, and with
that OR the planner stops reading the ``(user_id, completed, id)`` index in id order and reads
all of a user's rows first. Migration 0002 therefore has one policy per command, whose CASE
expression chooses between purge mode and the owner check. This script times the first page of
the list query as the application role under those policies, then, inside the same transaction,
under the OR-ed shape, and rolls everything back. Nothing is left changed.

    python -m bench.policy_whatif [--database taskstore_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

LIST_SQL = (
    "SELECT task.id, task.title, task.description, task.completed, task.completed_at, task.priority, task.due_at, "
    "task.version, task.created_at, task.updated_at, task.deleted_at FROM task WHERE task.user_id = $1::VARCHAR "
    "AND task.deleted_at IS NULL AND task.completed IS false ORDER BY task.id LIMIT $2::INTEGER"
)
OWNER = "user_id = current_setting('taskstore.user_id', true)"
PURGE = "current_setting('taskstore.maintenance', true) = 'purge' AND deleted_at IS NOT NULL"
ALTERNATIVE = f"""
DROP POLICY task_insert ON task;
DROP POLICY task_update ON task;
DROP POLICY task_select ON task;
DROP POLICY task_delete ON task;
CREATE POLICY task_owner ON task USING ({OWNER}) WITH CHECK ({OWNER});
CREATE POLICY task_purge_select ON task FOR SELECT USING ({PURGE});
CREATE POLICY task_purge_delete ON task FOR DELETE USING ({PURGE});
"""
CALLS = 200


async def first_pages(connection: asyncpg.Connection, users: list[str]) -> dict[str, float]:
    timings = {}
    for user in users:
        await connection.execute("SELECT set_config('taskstore.user_id', $1, true)", user)
        latencies = []
        for _ in range(CALLS):
            before = time.perf_counter()
            await connection.fetch(LIST_SQL, user, 21)
            latencies.append(time.perf_counter() - before)
            if sum(latencies) > 10:  # bounded: a slow plan stops after 10 s
                break
        timings[user] = statistics.median(latencies) * 1000
    return timings


async def run(database: str) -> None:
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    role = f"{database}_app"
    users = [row[0] for row in await connection.fetch(
        "SELECT user_id FROM task WHERE user_id LIKE 'bench-growth-%' OR user_id = 'bench-user-00042' GROUP BY user_id ORDER BY count(*)"
    )]
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(f'SET LOCAL ROLE "{role}"')
        current = await first_pages(connection, users)
        await connection.execute("RESET ROLE")
        await connection.execute(ALTERNATIVE)
        await connection.execute(f'SET LOCAL ROLE "{role}"')
        alternative = await first_pages(connection, users)
    finally:
        await transaction.rollback()
        await connection.close()
    print("| user | one CASE policy per command (migration 0002), p50 ms | owner and purge policies OR-ed, p50 ms |")
    print("| --- | ---: | ---: |")
    for user in users:
        print(f"| {user} | {current[user]:.3f} | {alternative[user]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.policy_whatif", description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="taskstore_bench", help="Benchmark database (default: %(default)s).")
    asyncio.run(run(parser.parse_args().database))


if __name__ == "__main__":
    main()
