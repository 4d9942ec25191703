"""A pool of servers, as a ratio measured side by side in one run: a 16-image sweep over 4 loopback AUTOMATIC1111
servers that each take 0.5 s per image (one image at a time, like the real web UI's queue), against the same sweep
over one of them (goal: at least 3.2x faster).

    python benchmarks/pool.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STEPS, STEP_SECONDS = 20, 0.025  # 0.5 s an image


def sweep(servers: list[str]) -> float:
    from ipyimagine import Imagine, Request, Session

    session = Session(Imagine(cache=False, log=False))
    request = Request("a red circle", backend="a1111", server=servers, steps=STEPS, width=64, height=64, seed=1, sweep=("seed=1-16",), expand=False)
    started = time.perf_counter()
    grid = session.run(request)
    assert len(grid.generations) == 16
    return time.perf_counter() - started


def main() -> None:
    from servers.a1111 import FakeA1111

    servers = [FakeA1111(step_seconds=STEP_SECONDS) for _ in range(4)]
    try:
        one = sweep([servers[0].url()])
        four = sweep([s.url() for s in servers])
    finally:
        for server in servers:
            server.stop()
    print("| measure | value |\n|---|---|")
    print(f"| 16-image sweep, 4 servers at 0.5 s an image over 1 server | {one / four:.2f}x faster ({four:.2f} s vs {one:.2f} s; goal >= 3.2x) |")


if __name__ == "__main__":
    main()
