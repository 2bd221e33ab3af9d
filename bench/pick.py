"""Microseconds per Pool.pick for every scheduler (a sanity figure, not a test).

python bench/pick.py [INSTANCES] [PICKS]
"""

from __future__ import annotations

import sys
import time

from tidegate.balancing import Pool
from tidegate.balancing.scheduler import scheduler_names


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    picks = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    keys = [b"10.9.%d.%d" % (i // 256, i % 256) for i in range(1024)]
    for name in scheduler_names():
        pool = Pool("bench", name)
        for i in range(n):
            pool.add(f"10.0.0.{i + 1}:80", f"10.0.0.{i + 1}", 80, 1 + i % 3)
        t = time.perf_counter()
        pool.pick(keys[0])  # builds the scheduler
        build = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(picks):
            pool.pick(keys[i & 1023])
        per_pick = (time.perf_counter() - t) / picks
        print(f"{name:22} {per_pick * 1e6:6.2f} µs/pick   build {build * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
