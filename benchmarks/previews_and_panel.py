"""Previews and the panel, as ratios measured side by side in one process (interleaved, medians of --repeat):

- a render with previews every 4 steps over the same render without (goal: at most 1.10x on the bundled model at
  its default settings, at most 1.05x on a tiny SDXL-like pipeline with the linear latent-to-RGB decoder);
- when the first preview appears, as a share of the render's time (goal: within the first 30%);
- a render through the panel over the same render from a cell (goal: at most 1.1x; it was 2.7x before all renders
  moved to one render thread).

    python benchmarks/previews_and_panel.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def preview_ratio(session, request, repeat: int) -> tuple[float, float, float, float]:
    """(median with, median without, ratio, first preview's share of the render)."""
    from dataclasses import replace

    with_, without, shares = [], [], []
    for seed in range(repeat + 1):  # interleaved; the first round warms up
        first = []
        started = time.perf_counter()
        on, off = replace(request, seed=seed, preview=4), replace(request, seed=seed, preview=0)
        # the listener a notebook cell uses: it shows (and so has decoded) at most four frames a second
        from ipyimagine.progress import Previews

        listener = Previews(lambda *_: first.append(time.perf_counter() - started))
        a = timed(lambda: session.imagine(on, on_preview=listener))
        b = timed(lambda: session.imagine(off, on_preview=lambda *_: None))
        if seed:
            with_.append(a)
            without.append(b)
            shares.append(first[0] / a if first else float("nan"))
    w, o = statistics.median(with_), statistics.median(without)
    return w, o, w / o, statistics.median(shares)


def panel_ratio(repeat: int) -> tuple[float, float, float]:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    import ipyimagine

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ipyimagine")
    ipyimagine.default_session().config.cache = False
    ipyimagine.default_session().config.log = False
    panel = ipyimagine.panel("a red circle on the left on a blue background", steps=56, seed=1, expand=False, preview=0)
    panel.controls["auto"].value = False
    cell, through_panel = [], []
    for seed in range(2, repeat + 3):
        with capture_output():
            cell.append(timed(lambda: shell.run_cell_magic("imagine", f"--seed {seed} --steps 56 --no-expand --preview 0", "a red circle")))
        panel.controls["seed"].value = seed

        def generate():
            panel.generate()
            panel.wait()

        through_panel.append(timed(generate))
    c, p = statistics.median(cell[1:]), statistics.median(through_panel[1:])
    return c, p, p / c


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from families import build_family

    from ipyimagine import Imagine, Request, Session
    from ipyimagine.renderers import diffusers_previews

    session = Session(Imagine(cache=False, log=False))
    rows = []
    bundled = Request("a red circle on the left on a blue background", expand=False)  # default settings: 20 steps
    w, o, ratio, share = preview_ratio(session, bundled, args.repeat)
    rows.append(("bundled model, previews every 4 steps (its own VAE) over none", f"{ratio:.3f}x ({w:.3f} s vs {o:.3f} s; goal <= 1.10x)"))
    rows.append(("bundled model, first preview at", f"{share:.0%} of the render (goal <= 30%)"))

    diffusers_previews.SMALL_VAE_PARAMETERS = 0  # the tiny SDXL's VAE is small too: measure the linear decoder
    sdxl = str(build_family("sdxl", Path(tempfile.mkdtemp())))
    request = Request("a red circle", model=sdxl, steps=20, width=256, height=256, expand=False)
    w, o, ratio, share = preview_ratio(session, request, args.repeat)
    rows.append(("tiny SDXL-like pipeline 256x256, linear decoder every 4 steps over none", f"{ratio:.3f}x ({w:.3f} s vs {o:.3f} s; goal <= 1.05x)"))
    rows.append(("tiny SDXL-like pipeline, first preview at", f"{share:.0%} of the render (goal <= 30%)"))
    diffusers_previews.SMALL_VAE_PARAMETERS = 5_000_000

    c, p, ratio = panel_ratio(args.repeat)
    rows.append(("56 steps through the panel over a cell (bundled model)", f"{ratio:.3f}x ({p:.3f} s vs {c:.3f} s; goal <= 1.1x)"))
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
