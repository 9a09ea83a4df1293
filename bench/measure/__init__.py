"""The measurements. Each module has ``measure(ctx) -> dict`` (one run) and
``render(runs, plan) -> str`` (its section of the report) and ``goals(runs)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.plan import Plan


@dataclass(frozen=True)
class Context:
    """What every measurement gets: the plan, the visitor's cookie, a logger."""

    plan: Plan
    cookie: str
    run: int  # 0-based index of this run of the measurement
    log: Callable[[str], None]


@dataclass(frozen=True)
class Goal:
    """One row of the goals table: the goal, what each run achieved, and whether met.

    With ``values`` (the figure of each run) and ``meets`` (whether a figure meets the
    goal), the table shows the median with its spread, and the goal is met when the
    median meets it: one run on a busy machine does not decide."""

    goal: str
    achieved: list[str]
    met: list[bool | None]
    values: list[float | None] | None = None
    meets: Callable[[float], bool] | None = None
    digits: int = 2
