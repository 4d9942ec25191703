"""In a real Jupyter kernel: the progress bar the result replaces, and Kernel -> Interrupt mid-render."""

import os
import queue
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")


@pytest.fixture
def kernel(tiny_model):
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        reply = client.execute_interactive(f"%load_ext ipyimagine\n%config Imagine.model = {tiny_model!r}", timeout=60)
        assert reply["content"]["status"] == "ok"
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def messages_until_idle(client, msg_id, on_message=None, timeout=120):
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if on_message:
            on_message(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen
    raise TimeoutError("the kernel did not finish the cell")


def test_progress_is_shown_then_replaced_by_the_picture(kernel):
    _, client = kernel
    msg_id = client.execute("%%imagine --seed 3 --steps 5\na red circle")
    seen = messages_until_idle(client, msg_id)
    [first] = [m for m in seen if m["msg_type"] == "display_data" and "<progress" in m["content"]["data"].get("text/html", "")]
    display_id = first["content"]["transient"]["display_id"]
    updates = [m for m in seen if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id]
    assert any("step 5 of 5" in m["content"]["data"].get("text/html", "") for m in updates)
    final = updates[-1]["content"]
    assert "image/png" in final["data"] and final["metadata"]["ipyimagine"]["entries"][-1]["seeds"] == [3]


def test_interrupt_stops_the_render_with_one_line_and_the_next_cell_works(kernel):
    manager, client = kernel
    interrupted = []

    def interrupt_once_running(msg):
        html = msg["content"].get("data", {}).get("text/html", "")
        if msg["msg_type"] == "update_display_data" and "step 1" in html and not interrupted:
            manager.interrupt_kernel()
            interrupted.append(time.time())

    msg_id = client.execute("%%imagine --seed 3 --steps 150 -n 8\na red circle")
    seen = messages_until_idle(client, msg_id, interrupt_once_running)
    assert interrupted, "the render never reported progress"
    reply = client.get_shell_msg(timeout=10)["content"]
    assert reply["status"] == "error" and reply["ename"] == "UsageError"  # so "Run All" stops here
    [printed] = [m["content"]["text"] for m in seen if m["msg_type"] == "stream"]
    assert printed.startswith("UsageError: Interrupted at step ")
    assert printed.endswith(" of 1200; nothing was kept. The next cell runs as usual.\n")
    assert printed.count("\n") == 1  # one line, no traceback
    assert not any("image/png" in m["content"].get("data", {}) for m in seen)

    reply = client.execute_interactive("import ipyimagine; assert ipyimagine.default_session().history == []", timeout=30)
    assert reply["content"]["status"] == "ok"  # the interrupted render left no half entry

    msg_id = client.execute("%%imagine --seed 3 --steps 2\na red circle")
    seen = messages_until_idle(client, msg_id)
    assert any("image/png" in m["content"].get("data", {}) for m in seen)
    assert client.get_shell_msg(timeout=10)["content"]["status"] == "ok"


def test_interrupt_while_the_panel_renders_its_first_picture_stops_it_and_the_next_cell_starts_at_once(kernel):
    manager, client = kernel
    interrupted = []

    def interrupt_once_rendering(msg):
        """The panel is shown at once; its status label says "step N of M" once the worker renders."""
        state = msg["content"].get("data", {}).get("state", {}) if msg["msg_type"] == "comm_msg" else {}
        if str(state.get("value", "")).startswith("step ") and not interrupted:
            manager.interrupt_kernel()
            interrupted.append(time.time())

    msg_id = client.execute("%%imagine --interactive --seed 3 --steps 150 -n 8\na red circle")
    seen = messages_until_idle(client, msg_id, interrupt_once_rendering)
    assert interrupted, "the panel never reported a step"
    assert any("application/vnd.jupyter.widget-view+json" in m["content"].get("data", {}) for m in seen)  # shown before it finished
    reply = client.get_shell_msg(timeout=10)["content"]
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    [printed] = [m["content"]["text"] for m in seen if m["msg_type"] == "stream"]
    assert printed == "UsageError: Interrupted; the panel's render was stopped. The next cell runs as usual.\n"

    started = time.time()
    msg_id = client.execute("%%imagine --seed 3 --steps 2\na red circle")
    seen = messages_until_idle(client, msg_id)
    assert any("image/png" in m["content"].get("data", {}) for m in seen) and time.time() - started < 20


@pytest.mark.slow
def test_the_panel_function_shows_the_panel_at_once_and_only_once(kernel):
    _, client = kernel
    msg_id = client.execute("import ipyimagine\np = ipyimagine.panel('a red circle', seed=3, steps=2)\np")
    seen = messages_until_idle(client, msg_id)
    views = [i for i, m in enumerate(seen) if "application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})]
    pictures = [i for i, m in enumerate(seen) if "image/png" in m["content"].get("data", {})]
    assert len(views) == 1  # shown by panel(), not again as the cell's value
    assert pictures and views[0] < pictures[0]  # before its first picture was made
