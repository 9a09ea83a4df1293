"""Summarise py-spy profiles taken with ``python -m bench.run --profile``.

``python -m bench.profiles test-artifacts/bench/profiles/<measurement-runN>/<process>.txt``
prints where the process spent its active samples: the functions at the top of the
stack (self time) and every function on the stack (inclusive time). Samples of threads
waiting (the event loop in ``select``, idle executor threads) are left out.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

IDLE = ("Condition.wait", "EpollSelector.select", "EpollReactor.doPoll", "Event.wait")


def summarise(path: Path, top: int, within: str | None = None) -> str:
    """Self and inclusive shares of the active samples in one raw py-spy profile
    (only of the stacks with a frame containing ``within``, when given)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in IDLE):
            continue
        if within and not any(within in frame for frame in frames):
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{path}: no active samples"
    lines = [f"{path}: {total} active samples", "self:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top * 3)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--within", help="only stacks with a frame containing this text")
    args = parser.parse_args()
    for path in args.profiles:
        print(summarise(path, args.top, args.within))
        print()


if __name__ == "__main__":
    main()
