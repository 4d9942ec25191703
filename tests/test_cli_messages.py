"""The ipyimagine command as a user meets it first: its help, and one clean line for each mistake."""

import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ipyimagine", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_options(flag):
    done = cli(flag)
    assert done.returncode == 0, done.stderr
    assert "--steps N" in done.stdout and "(%imagine backends)" in done.stdout


def test_help_through_the_installed_command():
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from ipyimagine.cli import main; sys.argv=['ipyimagine','--help']; main()"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "usage: ipyimagine" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["an idea", "--stesp", "3"], "ipyimagine: unknown option --stesp; did you mean --steps?"),
        (
            ["an idea", "--interactive"],
            "ipyimagine: --interactive is an option of %%imagine in a notebook (the panel of sliders); the ipyimagine command has no such option.",
        ),
        (["history", "missing.ipynb"], "ipyimagine: There is no notebook 'missing.ipynb'; give the path of an .ipynb file."),
    ],
)
def test_each_mistake_is_one_line_naming_the_command_once(args, expected, tmp_path):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == expected


def test_the_command_numbers_a_notebooks_entries_as_imagine_history_does(shell, tmp_path):
    """Oldest 1 in both, so `%imagine rerun N` and `ipyimagine history` mean the same entry."""
    import nbformat
    from IPython.utils.capture import capture_output

    cells = []
    for seed in (1, 2, 3):
        with capture_output() as captured:
            shell.run_cell_magic("imagine", f"--seed {seed} --steps 2", "a red circle")
        outputs = [nbformat.v4.new_output("display_data", data=o.data, metadata=o.metadata) for o in captured.outputs]
        cells.append(nbformat.v4.new_code_cell(f"%%imagine --seed {seed} --steps 2\na red circle", outputs=outputs))
    path = tmp_path / "three.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    shell.user_ns["__session__"] = str(path)
    try:
        magic = {r.number: r.record["seeds"][0] for r in shell.run_line_magic("imagine", "history").rows}
    finally:
        del shell.user_ns["__session__"]
    done = cli("history", str(path))
    import re

    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    command = {cells[0]: int(cells[3]) for cells in rows}  # columns: #, time, idea, seed, ...
    assert done.returncode == 0 and command == magic and magic["1"] == 1


def test_saved_pictures_get_the_mode_the_umask_gives_any_new_file(shell, tmp_path):
    import os
    import stat

    shell.run_cell_magic("imagine", f"--seed 1 --steps 2 --save {tmp_path / 'out'}", "a red circle")
    [saved] = list((tmp_path / "out").glob("*.png"))
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~mask  # 0644 under the usual umask, not mkstemp's 0600


def test_imagine_as_a_cells_last_line_shows_the_picture_and_its_caption(shell):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        shell.run_cell("import ipyimagine\nipyimagine.imagine('a red circle', seed=2, steps=2)")
    kinds = [sorted(o.data) for o in captured.outputs]
    assert any("image/png" in k for k in kinds) and any("text/html" in k for k in kinds)
    caption = next(o.data["text/html"] for o in captured.outputs if "text/html" in o.data)
    assert "a red circle" in caption and "seed 2" in caption


@pytest.mark.slow
def test_o_into_a_missing_folder_makes_it_and_a_corrupt_log_is_one_sentence(tmp_path):
    import os

    env = {**os.environ, "IPYIMAGINE_HOME": str(tmp_path / "home"), "IPYIMAGINE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "ipyimagine", "a red circle", "--steps", "2", "-q", "-o", "missing/dir/x.png"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr and (tmp_path / "missing" / "dir" / "x.png").is_file()
    log = tmp_path / "home" / "history.sqlite"
    log.write_bytes(b"\x00not a database" * 400)
    done = subprocess.run([sys.executable, "-m", "ipyimagine", "history"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith(f"ipyimagine: The history log at {log} cannot be read (")


@pytest.mark.parametrize("name", ["x y", "1st", "class"])
def test_out_must_be_a_variable_name(shell, name):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=r"^--out .* is not a Python variable name; use letters, digits and _ \(e.g. --out picture\).$"):
        shell.run_cell_magic("imagine", f"--seed 1 --steps 2 --out '{name}'", "a red circle")


@pytest.mark.parametrize(
    "size, message",
    [
        ("100x100", "--size 100x100: each side must be a multiple of 8 (try 96x96)."),
        ("5000x64", "--size 5000x64: each side must be from 8 to 2048 (try 2048x64)."),
    ],
)
def test_a_size_is_refused_in_the_words_the_user_typed(shell, size, message):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("imagine", f"--size {size} --steps 2", "a red circle")
    assert str(caught.value) == message
