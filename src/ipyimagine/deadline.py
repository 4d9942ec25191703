"""Wait for a server's work with a wall-clock deadline, and stop waiting at once on Cancel or Interrupt.

HTTP clients time out between two bytes, not on the whole reply: a server that drips a byte a second, or a stream
of events that never ends, outlives every such timeout. `within` runs the request on a worker thread and waits for
it in short slices, checking the deadline and `cancelled()`; when either ends the wait, `abandon()` closes the
connection (so the worker ends soon) and the caller gets its answer at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitTimeout


class DeadlinePassed(Exception):
    """The work took longer than its deadline (the caller turns this into a sentence naming its setting)."""


def within(work, timeout: float, cancelled=None, abandon=None, slice_s: float = 0.1):
    """`work()`'s result, or DeadlinePassed after `timeout` seconds, or the `Cancelled` of ipyimagine when `cancelled()`
    turns true; KeyboardInterrupt in the waiting thread stops the wait too. `abandon()` is called whenever the wait
    ends before the work."""
    from .errors import Cancelled

    future: Future = Future()

    def runner():
        try:
            future.set_result(work())
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(error)

    threading.Thread(target=runner, name="ipyimagine-request", daemon=True).start()
    ends = time.monotonic() + timeout
    try:
        while True:
            try:
                return future.result(timeout=slice_s)
            except WaitTimeout:
                pass
            if cancelled is not None and cancelled():
                raise Cancelled("Cancelled; the server's reply was not waited for.")
            if time.monotonic() > ends:
                raise DeadlinePassed()
    except BaseException:
        if not future.done() and abandon is not None:
            try:
                abandon()
            except Exception:  # noqa: BLE001 - closing a connection must not hide why we stopped
                pass
        raise
