"""Speed figures, measured side by side in one run, each in fresh processes; prints a Markdown table.

    python benchmarks/run.py [--repeat 5] [--threads 1]

- `%load_ext ipyimagine` over a bare IPython start (goal: adds under 0.2 s, imports no torch);
- first render in a fresh process (imports, pipeline load, render) and a warm render, for the
  bundled model and for the tiny test pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

START_SHELL = "import time; t = time.perf_counter(); from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance()"
LOAD_EXT = "; ip.run_line_magic('load_ext', 'ipyimagine')"
REPORT = "; import sys; print(time.perf_counter() - t, 'torch' in sys.modules)"

RENDER = """
import json, sys, time
t0 = time.perf_counter()
from ipyimagine import Imagine, Request, Session
session = Session(Imagine(threads={threads}))
model = {model!r} or None
first = session.imagine(Request("a red circle on the left on a blue background", model=model, seed=1, expand=False))
t1 = time.perf_counter()
warm = []
for seed in range(2, 7):
    s = time.perf_counter(); session.imagine(Request("a red circle on the left on a blue background", model=model, seed=seed, expand=False)); warm.append(time.perf_counter() - s)
print(json.dumps({{"cold": t1 - t0, "load": first.timings["load"], "warm": sorted(warm)[len(warm) // 2]}}))
"""


def run_python(code: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for renders (0: torch's default)")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    bare, loaded, torch_imported = [], [], False
    for _ in range(args.repeat):  # interleaved, so background load hits both alike
        bare.append(float(run_python(START_SHELL + REPORT, env).split()[0]))
        seconds, torch_flag = run_python(START_SHELL + LOAD_EXT + REPORT, env).split()
        loaded.append(float(seconds))
        torch_imported |= torch_flag == "True"
    rows = [
        ("bare IPython shell start (median)", f"{statistics.median(bare):.3f} s"),
        ("shell start + %load_ext ipyimagine (median)", f"{statistics.median(loaded):.3f} s"),
        ("%load_ext adds", f"{statistics.median(loaded) - statistics.median(bare):+.3f} s (goal < 0.2 s)"),
        ("torch imported by %load_ext", "yes" if torch_imported else "no"),
    ]

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_pipeline

    with tempfile.TemporaryDirectory() as folder:
        tiny = str(build_tiny_pipeline(Path(folder)))
        for label, model in (("bundled shapes model", ""), ("tiny test pipeline", tiny)):
            figures = json.loads(run_python(RENDER.format(threads=args.threads, model=model), env))
            rows += [
                (f"{label}: first render in a fresh process (imports + load + render, 20 steps)", f"{figures['cold']:.2f} s"),
                (f"{label}: of which from_pretrained", f"{figures['load']:.2f} s"),
                (f"{label}: warm render (median of 5)", f"{figures['warm']:.3f} s"),
            ]

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"torch threads: {args.threads or 'default'}\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
