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
    done = subprocess.run([sys.executable, "-c", "import sys; from ipyimagine.cli import main; sys.argv=['ipyimagine','--help']; main()"],
                          capture_output=True, text=True, timeout=120)
    assert "usage: ipyimagine" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("args, expected", [
    (["an idea", "--stesp", "3"], "ipyimagine: unknown option --stesp; did you mean --steps?"),
    (["an idea", "--interactive"], "ipyimagine: --interactive is an option of %%imagine in a notebook (the panel of sliders); "
                                   "the ipyimagine command has no such option."),
    (["history", "missing.ipynb"], "ipyimagine: There is no notebook 'missing.ipynb'; give the path of an .ipynb file."),
])
def test_each_mistake_is_one_line_naming_the_command_once(args, expected, tmp_path):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == expected
