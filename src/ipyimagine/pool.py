"""A pool of servers sharing the work: the images of -n, the cells of a sweep and a list of ideas are spread over
several servers (`--server URL` given more than once), `Imagine.server_concurrency` at a time on each.

Each image keeps its own explicit seed, so it is the same picture whichever server draws it; results keep their
order; a server that fails or stops answering is taken out with a note and its work goes to the others; Cancel
stops them all (each render sees the same `cancelled`). A server taken out is tried again after RETRY_AFTER
seconds, so one restarted while the kernel runs rejoins the pool.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import BackendError, Cancelled, ImagineError

RETRY_AFTER = 60.0  # seconds before a server taken out of the pool is tried again


class ServerPool:
    def __init__(self, servers: tuple[str, ...], per_server: int = 1):
        self.servers = tuple(dict.fromkeys(servers))
        self.per_server = max(1, per_server)
        self._busy = {server: 0 for server in self.servers}
        self._dead: dict[str, tuple[str, float]] = {}  # server -> (why it was taken out, when)
        self._changed = threading.Condition()
        self.notes: list[str] = []

    @property
    def slots(self) -> int:
        return len(self.servers) * self.per_server

    def _acquire(self, cancelled) -> str:
        with self._changed:
            while True:
                now = time.monotonic()
                for server, (_, since) in list(self._dead.items()):
                    if now - since > RETRY_AFTER:
                        del self._dead[server]  # a while has passed: it may be back
                alive = [s for s in self.servers if s not in self._dead]
                if not alive:
                    from .renderers.servers import host_of

                    reasons = "; ".join(f"{host_of(s)}: {why}" for s, (why, _) in self._dead.items())
                    raise BackendError(f"Every server of the pool failed ({reasons}).")
                free = [s for s in alive if self._busy[s] < self.per_server]
                if free:
                    server = min(free, key=lambda s: self._busy[s])
                    self._busy[server] += 1
                    return server
                if cancelled is not None and cancelled():
                    raise Cancelled("Cancelled while waiting for a free server.")
                self._changed.wait(0.2)

    def _release(self, server: str, failure: str | None = None) -> None:
        with self._changed:
            self._busy[server] -= 1
            if failure and server not in self._dead:
                self._dead[server] = (failure, time.monotonic())
                from .renderers.servers import host_of

                self.notes.append(f"{host_of(server)} was taken out of the pool ({failure}); its work went to the others.")
            self._changed.notify_all()

    def run_one(self, work, cancelled=None):
        """`work(server)` on a free server; on a server failure, again on another (never the same twice)."""
        while True:
            server = self._acquire(cancelled)
            try:
                result = work(server)
            except Cancelled:
                self._release(server)
                raise
            except BackendError as error:
                self._release(server, failure=str(error).rstrip("."))
                continue  # another server; when none is left, _acquire says why each failed
            except ImagineError:
                self._release(server)
                raise
            self._release(server)
            return result

    def map(self, works: list, cancelled=None) -> list:
        """Each of `works` (a function of a server) on the pool, at most `slots` at once; results in order."""
        with ThreadPoolExecutor(max_workers=min(self.slots, max(1, len(works))), thread_name_prefix="ipyimagine-pool") as executor:
            futures = [executor.submit(self.run_one, work, cancelled) for work in works]
            return [future.result() for future in futures]


class BatchProgress:
    """Progress of several renders running at once, reported as one (done, total)."""

    def __init__(self, on_step, parts: int):
        self.on_step, self.parts = on_step, parts
        self._done: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def part(self, index: int):
        if self.on_step is None:
            return None

        def step(done: int, total: int) -> None:
            with self._lock:
                self._done[index] = (done, total)
                per = max(t for _, t in self._done.values())
                finished = sum(d for d, _ in self._done.values())
                self.on_step(min(finished, per * self.parts), per * self.parts)

        return step
