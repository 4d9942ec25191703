"""Speed figures, measured side by side in one run, each in fresh processes; prints a Markdown table.

    python benchmarks/run.py [--repeat 5] [--threads 1]

- `%load_ext ipyimagine` over a bare IPython start (goal: adds under 0.2 s, imports no torch);
- first render in a fresh process (imports, pipeline load, render) and a warm render, for the
  bundled model and for the tiny test pipeline;
- the magic end to end over a raw `pipe(...)` call with identical settings (goal: at most 1.05x);
- a notebook of 10 %%imagine cells re-executed with a warm cache over cold (goal: at least 20x faster, no model calls);
- peak memory (RSS) of running notebooks/01-quickstart.ipynb (Binder gives 1-2 GB).
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
session = Session(Imagine(threads={threads}, cache=False, log=False))  # measure renders, not cache reads
model = {model!r} or None
first = session.imagine(Request("a red circle on the left on a blue background", model=model, seed=1, expand=False))
t1 = time.perf_counter()
warm = []
for seed in range(2, 7):
    s = time.perf_counter()
    session.imagine(Request("a red circle on the left on a blue background", model=model, seed=seed, expand=False))
    warm.append(time.perf_counter() - s)
print(json.dumps({{"cold": t1 - t0, "load": first.timings["load"], "warm": sorted(warm)[len(warm) // 2]}}))
"""


MAGIC_VS_PIPE = """
import json, statistics, time, torch
torch.set_num_threads({threads} or torch.get_num_threads())
from diffusers import StableDiffusionPipeline
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from ipyimagine.renderers.diffusers_pipeline import BUNDLED_DIR
prompt = "a red circle on the left on a blue background"
pipe = StableDiffusionPipeline.from_pretrained(str(BUNDLED_DIR), local_files_only=True, dtype=torch.float32)  # as the renderer loads it on CPU
pipe.set_progress_bar_config(disable=True)
shell = InteractiveShell.instance(); shell.run_line_magic("load_ext", "ipyimagine")
raw, magic = [], []
for seed in range(1, 12):  # interleaved, first round is warm-up
    t = time.perf_counter()
    pipe(prompt, num_inference_steps=20, guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(seed))
    raw.append(time.perf_counter() - t)
    t = time.perf_counter()
    with capture_output():
        shell.run_cell_magic("imagine", f"--no-expand --no-cache --seed {{seed}} --steps 20 --guidance 5", prompt)
    magic.append(time.perf_counter() - t)
print(json.dumps({{"raw": statistics.median(raw[1:]), "magic": statistics.median(magic[1:])}}))
"""

NOTEBOOK_TWICE = """
import json, os, sys, time, tempfile
import nbformat, nbclient
cells = ["%load_ext ipyimagine"] + [f"%%imagine --seed {i}\\na red circle on the left on a blue background" for i in range(10)]
os.environ["IPYIMAGINE_CACHE"] = tempfile.mkdtemp()
def run():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    t = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    seconds = time.perf_counter() - t
    entries = [e for c in nb.cells for o in c.get("outputs", []) for e in (o.get("metadata", {}).get("ipyimagine", {}).get("entries") or [])[-1:]]
    made = sum(1 for e in entries if e.get("params", {}).get("cached_images") == 0)  # the record lives in the format-2 entries
    return seconds, made
cold, warm = run(), run()
print(json.dumps({"cold": cold[0], "warm": warm[0], "cold_renders": cold[1], "warm_renders": warm[1]}))
"""

QUICKSTART_RSS = """
import json, resource, subprocess, sys
subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout",
                {path!r}], check=True, capture_output=True)
print(json.dumps({{"peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def run_python(code: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"a measurement failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


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

    figures = json.loads(run_python(MAGIC_VS_PIPE.format(threads=args.threads), env))
    rows.append(
        (
            "%%imagine (no expansion, no cache) over a raw pipe(...) call, same settings, median of 10",
            f"{figures['magic'] / figures['raw']:.3f}x ({figures['magic']:.3f} s vs {figures['raw']:.3f} s; goal <= 1.05x)",
        )
    )
    figures = json.loads(run_python(NOTEBOOK_TWICE, {**env, "OMP_NUM_THREADS": str(args.threads or "")} if args.threads else env))
    rows.append(
        (
            "10-cell notebook re-executed, warm cache over cold",
            f"{figures['cold'] / figures['warm']:.1f}x faster ({figures['cold']:.1f} s cold, {figures['warm']:.1f} s warm, kernel start included; "
            f"renders: {figures['cold_renders']} cold, {figures['warm_renders']} warm)",
        )
    )
    fresh = tempfile.mkdtemp()  # an empty cache and log, as on a fresh Binder
    figures = json.loads(
        run_python(
            QUICKSTART_RSS.format(path=str(ROOT / "notebooks" / "01-quickstart.ipynb")), {**env, "IPYIMAGINE_HOME": fresh, "IPYIMAGINE_CACHE": fresh + "/cache"}
        )
    )
    rows.append(("peak RSS while running notebooks/01-quickstart.ipynb (largest process: the kernel)", f"{figures['peak_rss_mb']:.0f} MB"))

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"torch threads: {args.threads or 'default'}\n"
    )
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
