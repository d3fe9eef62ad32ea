"""Sizes of the data set and of the load loops for each mode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    database: str
    users: int
    tasks_per_user: int
    growth_sizes: tuple[int, ...]
    conversation_sizes: tuple[int, ...]
    repeats: int
    # Every load loop stops at whichever bound it reaches first.
    sequential_calls: int
    concurrent_calls: int
    seconds_per_run: float
    sessions: int = 16
    sqlite_users: int = 0
    # W5 compares this many users' list pages between one replica and two.
    replica_check_users: int = 20

    def spec(self) -> dict[str, object]:
        """Return what the generated data depends on; a stored data set is reused only when it matches."""
        return {
            "version": 1,
            "users": self.users,
            "tasks_per_user": self.tasks_per_user,
            "growth_sizes": list(self.growth_sizes),
            "conversation_sizes": list(self.conversation_sizes),
        }


FULL = Profile(
    name="full",
    database="taskstore_bench",
    users=10_000,
    tasks_per_user=100,
    growth_sizes=(100, 10_000, 100_000),
    conversation_sizes=(100, 10_000, 100_000),
    repeats=3,
    sequential_calls=1_000,
    concurrent_calls=3_000,
    seconds_per_run=4.0,
    sqlite_users=1_000,
)

QUICK = Profile(
    name="quick",
    database="taskstore_bench_quick",
    users=200,
    tasks_per_user=100,
    growth_sizes=(100, 1_000, 10_000),
    conversation_sizes=(100, 1_000, 10_000),
    repeats=3,
    sequential_calls=300,
    concurrent_calls=800,
    seconds_per_run=2.0,
    sqlite_users=200,
)

SMOKE = Profile(
    name="smoke",
    database="taskstore_bench_smoke",
    users=20,
    tasks_per_user=30,
    growth_sizes=(100, 300),
    conversation_sizes=(100, 300),
    repeats=1,
    sequential_calls=10,
    concurrent_calls=32,
    seconds_per_run=1.0,
    sessions=4,
    sqlite_users=20,
    replica_check_users=2,
)

PROFILES = {profile.name: profile for profile in (FULL, QUICK, SMOKE)}
