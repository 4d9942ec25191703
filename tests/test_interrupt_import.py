"""Kernel -> Interrupt during the first render of a fresh kernel: torch's import must never be left half done."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from ipyimagine.renderers.diffusers_loading import import_torch_and_diffusers

    assert "torch" not in sys.modules
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()  # Interrupt while torch is importing
    try:
        import_torch_and_diffusers()
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted")
    torch, diffusers = import_torch_and_diffusers()  # the next cell waits for the same import, then works
    print("works", float(torch.ones(2).sum()), hasattr(diffusers, "DiffusionPipeline"))
""")


@pytest.mark.slow
def test_an_interrupt_during_the_heavy_imports_leaves_them_whole_for_the_next_cell():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["interrupted", "works 2.0 True"]
