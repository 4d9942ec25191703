"""Every render of a process runs on one thread, whichever face asked (a cell, a panel, the CLI).

Why: PyTorch's CPU kernels run on an OpenMP thread team that belongs to the thread that started them. A render from
a second thread (a panel's worker, after a cell has rendered on the kernel's main thread) gets a second team, and
two teams on the same cores fight: measured on 2 cores, the same 56-step render took 0.73 s on the thread that
rendered first and 1.9 s on another. One render thread keeps one team, so a panel is as fast as a cell, and renders
take turns on the shared pipelines without a lock.

The caller waits for its render; Kernel -> Interrupt while it waits stops the render at its next step.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_render_thread_ident: int | None = None


def _mark() -> None:
    global _render_thread_ident
    _render_thread_ident = threading.get_ident()


def _get() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipyimagine-render", initializer=_mark)
        return _executor


def run(function, cancelled=None):
    """`function(cancelled)` on the render thread; returns its result or raises its error. `cancelled` is wrapped so
    that an interrupt of the waiting thread also stops the render at its next step."""
    interrupted = threading.Event()

    def stop() -> bool:
        return interrupted.is_set() or (cancelled is not None and cancelled())

    if threading.get_ident() == _render_thread_ident:  # already on it (a renderer that renders through another)
        return function(stop)
    future = _get().submit(function, stop)
    try:
        return future.result()
    except KeyboardInterrupt:
        interrupted.set()
        try:
            future.result(timeout=60)  # it stops at its next step; wait so nothing half-made is left behind
        except BaseException:  # noqa: BLE001 - the render's own Cancelled: expected, the interrupt is what matters
            pass
        raise
