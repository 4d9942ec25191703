"""A notebook executed by nbclient in a real kernel: what the saved .ipynb keeps."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.mark.slow
def test_a_saved_notebook_keeps_the_picture_and_its_record_not_the_progress_bar(tiny_model, tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(f"%load_ext ipyimagine\n%config Imagine.model = {tiny_model!r}"),
            nbformat.v4.new_code_cell("%%imagine --seed 5 --steps 3 -n 2\na red circle on a blue background"),
        ]
    )
    os.environ["HF_HUB_OFFLINE"] = "1"
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)

    outputs = nbformat.read(path, as_version=4).cells[1].outputs
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1 and pictures[0].output_type == "display_data"
    record = pictures[0].metadata["ipyimagine"]["entries"][-1]
    assert record["seeds"] == [5, 6] and record["params"]["steps"] == 3 and record["idea"].startswith("a red circle")
    assert not any("<progress" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert any("expanded prompt" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert not any(o.output_type == "error" for o in outputs)


@pytest.mark.slow
def test_re_executing_a_notebook_with_a_warm_cache_calls_no_model(tiny_model, tmp_path):
    cells = [f"%load_ext ipyimagine\n%config Imagine.model = {tiny_model!r}"] + [
        f"%%imagine --seed {seed} --steps 3\na red circle at the top" for seed in (1, 2, 3)
    ]

    def execute():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
        return [o.metadata["ipyimagine"]["entries"][-1] for cell in notebook.cells for o in cell.get("outputs", []) if "ipyimagine" in o.get("metadata", {})]

    os.environ["HF_HUB_OFFLINE"] = "1"
    cold, warm = execute(), execute()
    assert [e["params"]["cached_images"] for e in cold] == [0, 0, 0]
    assert [e["params"]["cached_images"] for e in warm] == [1, 1, 1]
    assert [e["timings"]["load"] for e in warm] == [0.0, 0.0, 0.0]  # no pipeline was loaded in the second kernel
    assert [e["prompt"] for e in warm] == [e["prompt"] for e in cold]
