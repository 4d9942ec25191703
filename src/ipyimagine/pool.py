"""A pool of servers sharing the work: the images of -n, the cells of a sweep and a list of ideas are spread over
several servers (`--server URL` given more than once), `Imagine.server_concurrency` at a time on each.

Each image keeps its own explicit seed, so it is the same picture whichever server draws it; results keep their
order; a server that fails or stops answering is taken out with a note and its work goes to the others, but a
request a server refuses (a 400: `Refused`) is that request's failure, not the server's. Cancel and Kernel ->
Interrupt stop the work at once (`run_all`): work not started never starts, each running render sees its
`cancelled()` turn true and sends its own server its stop, and what was finished is handed back (`Unfinished`).
A server taken out is tried again after RETRY_AFTER seconds, so one restarted while the kernel runs rejoins the pool.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from .errors import BackendError, Cancelled, ImagineError, Refused

RETRY_AFTER = 60.0  # seconds before a server taken out of the pool is tried again
STOP_GRACE = 5.0  # seconds the running renders are given, after Cancel or Interrupt, to tell their servers to stop
WAIT_SLICE = 0.1  # how often a waiting caller checks Cancel (Interrupt reaches it at once)


class Unfinished(Exception):
    """Not every piece of work was done: `error` says why (the KeyboardInterrupt, the Cancelled, or the first failure),
    `finished` holds the results that were, by index, and `failed` each ended call's error, by index."""

    def __init__(self, error: BaseException, finished: dict, failed: dict | None = None):
        super().__init__(str(error))
        self.error, self.finished, self.failed = error, finished, failed or {}


def run_all(calls: list, workers: int, cancelled=None, name: str = "ipyimagine-pool") -> list:
    """`call(cancelled)` for each of `calls`, `workers` at a time; the results in order, or `Unfinished`.

    The caller waits in slices: Cancel (`cancelled()`) or Kernel -> Interrupt (KeyboardInterrupt in the waiting thread)
    stops everything at once: calls not started never start, the running ones see the `cancelled` they were given turn
    true (a renderer then sends its server its own stop) and get STOP_GRACE seconds to do so. One call's failure does
    not stop the others: their results are kept, and the first failure is raised once they are done."""
    stop = threading.Event()

    def halted() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    executor = ThreadPoolExecutor(max_workers=max(1, min(workers, len(calls))), thread_name_prefix=name)
    futures = [executor.submit(call, halted) for call in calls]
    why: BaseException | None = None
    try:
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=WAIT_SLICE)
            if pending and halted():
                why = Cancelled("Cancelled; the work not yet started was dropped and the servers were told to stop.")
                break
    except KeyboardInterrupt as interrupt:
        why = interrupt
    finally:
        if why is not None or any(not f.done() for f in futures):
            stop.set()
            for future in futures:
                future.cancel()  # not started: never starts
            try:
                wait([f for f in futures if not f.cancelled()], timeout=STOP_GRACE)
            except KeyboardInterrupt:  # a second Interrupt: stop waiting for the servers' stops
                pass
        executor.shutdown(wait=False, cancel_futures=True)
    ended = [f for f in futures if f.done() and not f.cancelled()]
    finished = {i: f.result() for i, f in enumerate(futures) if f in ended and f.exception() is None}
    if why is None:
        failures = [f.exception() for f in futures if f in ended and f.exception() is not None]
        if not failures:
            return [f.result() for f in futures]
        why = next((e for e in failures if not isinstance(e, Cancelled)), failures[0])
    raise Unfinished(why, finished, {i: f.exception() for i, f in enumerate(futures) if f in ended and f.exception() is not None})


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
                if cancelled is not None and cancelled():
                    raise Cancelled("Cancelled while waiting for a free server.")
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
                self._changed.wait(WAIT_SLICE)

    def _release(self, server: str, failure: str | None = None) -> None:
        with self._changed:
            self._busy[server] -= 1
            if failure and server not in self._dead:
                self._dead[server] = (failure, time.monotonic())
                from .renderers.servers import host_of

                self.notes.append(f"{host_of(server)} was taken out of the pool ({failure}); its work went to the others.")
            self._changed.notify_all()

    def run_one(self, work, cancelled=None):
        """`work(server, cancelled)` on a free server; on a server failure, again on another (never the same twice).
        A request the server refused is not the server's failure: it stays in, and the refusal is the request's."""
        while True:
            server = self._acquire(cancelled)
            try:
                result = work(server, cancelled)
            except (Cancelled, Refused):
                self._release(server)
                raise
            except BackendError as error:
                self._release(server, failure=str(error).rstrip("."))
                continue  # another server; when none is left, _acquire says why each failed
            except ImagineError:
                self._release(server)
                raise
            except BaseException as error:  # a plugin's own error or a bug: the slot is freed, the error is one sentence
                self._release(server)
                if isinstance(error, Exception):
                    from .renderers.servers import host_of

                    raise BackendError(f"{host_of(server)}: the render failed ({type(error).__name__}).") from error
                raise
            self._release(server)
            return result

    def map(self, works: list, cancelled=None) -> list:
        """Each of `works` (a function of a server and a `cancelled`) on the pool, at most `slots` at once; results in
        order, or `Unfinished` with the ones that were finished (see `run_all`)."""
        return run_all([lambda halted, work=work: self.run_one(work, halted) for work in works], self.slots, cancelled)


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
