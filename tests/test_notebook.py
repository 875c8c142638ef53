"""The notebook runner: the project's interpreter whatever kernels exist, quiet progress, atomic reports."""

import json
import sys

import nbformat as nbf
import pytest

from llome.notebook import run_notebook


def _notebook(path, body: str):
    book = nbf.v4.new_notebook()
    parameters = nbf.v4.new_code_cell("progress = True\nout = 'unset'")
    parameters.metadata["tags"] = ["parameters"]
    book.cells = [parameters, nbf.v4.new_code_cell(body)]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(book, path)
    return path


def test_a_notebook_runs_on_this_interpreter_with_quiet_progress(tmp_path, monkeypatch):
    # An installed "python3" kernel that points elsewhere must not be the one that runs the stage.
    bogus = tmp_path / "jupyter" / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher",
                                                            "-f", "{connection_file}"],
                                                   "display_name": "elsewhere", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    source = _notebook(tmp_path / "probe.ipynb",
                       "import json, sys\nprint(json.dumps({'executable': sys.executable, 'progress': progress, 'out': out}))")
    executed = run_notebook(source, {"out": "here"}, reports_dir=tmp_path / "reports", log_output=False)
    outputs = nbf.read(executed, as_version=4).cells[-1].outputs
    seen = json.loads("".join(o.get("text", "") for o in outputs))
    assert seen == {"executable": sys.executable, "progress": False, "out": "here"}
    assert (tmp_path / "reports" / "probe.html").read_text().count("<html") == 1
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_the_your_objective_tutorial_runs_and_shows_paid_and_diagnostic_calls(tmp_path):
    from pathlib import Path

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "08_your_objective.ipynb"
    executed = run_notebook(notebook, {"rounds": 1}, reports_dir=tmp_path, log_output=False)
    text = "".join(o.get("text", "") for cell in nbf.read(executed, as_version=4).cells
                   for o in cell.get("outputs", []))
    assert "optimum: 6.0" in text
    assert "diagnostic (unpaid) calls: 0\n" in text          # off by default for your own objective
    assert "same paid labels as without diagnostics: True" in text
