"""Timing loops and the statistics reported for them."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio


@dataclass(frozen=True)
class Run:
    """One timed run: per-call latencies in seconds and the wall time of the whole run."""

    latencies: list[float]
    wall: float
    server_cpu: float | None = None  # CPU seconds the server process used during the run

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def throughput(self) -> float:
        return self.calls / self.wall if self.wall > 0 else 0.0


@dataclass(frozen=True)
class Result:
    """The median over repeats of each statistic of a measurement."""

    name: str
    p50_ms: float
    p99_ms: float
    throughput: float
    calls: int
    repeats: int
    concurrency: int
    server_cpu_ms: float | None = None  # median server CPU per call


    @classmethod
    def of(cls, name: str, runs: Sequence[Run], concurrency: int) -> Result:
        return cls(
            name=name,
            p50_ms=statistics.median(run.p50_ms for run in runs),
            p99_ms=statistics.median(run.p99_ms for run in runs),
            throughput=statistics.median(run.throughput for run in runs),
            calls=sum(run.calls for run in runs),
            repeats=len(runs),
            concurrency=concurrency,
            server_cpu_ms=statistics.median(run.server_cpu / run.calls * 1000 for run in runs)
            if all(run.server_cpu is not None and run.calls for run in runs)
            else None,
        )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def sequential(call: Callable[[int], Awaitable[object]], calls: int, seconds: float) -> Run:
    """Call ``call(i)`` one after another until ``calls`` calls or ``seconds`` have passed."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    for index in range(calls):
        before = time.perf_counter()
        await call(index)
        after = time.perf_counter()
        latencies.append(after - before)
        if after >= deadline:
            break
    return Run(latencies, time.perf_counter() - started)


async def concurrent(
    workers: Sequence[Callable[[int], Awaitable[object]]], calls: int, seconds: float
) -> Run:
    """Run every worker in a loop at the same time until ``calls`` calls in all or ``seconds`` have passed."""
    latencies: list[float] = []
    issued = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(call: Callable[[int], Awaitable[object]]) -> None:
        nonlocal issued
        while issued < calls and time.perf_counter() < deadline:
            index = issued
            issued += 1
            before = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - before)

    async with anyio.create_task_group() as group:
        for worker in workers:
            group.start_soon(loop, worker)
    return Run(latencies, time.perf_counter() - started)
