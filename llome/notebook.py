"""Run one pipeline notebook with papermill, keep the executed copy and export it to HTML.

    python -m llome.notebook notebooks/02_seed_data.ipynb -p config_path data/params/seed_data.json

writes reports/02_seed_data.ipynb and reports/02_seed_data.html (with `--name`, another stem, e.g. one
per method). Both are written atomically: a failed run leaves the previous report in place.

The notebook runs on this interpreter, whatever kernels the machine has installed, and with
`progress = False`: the executed copy keeps a few log lines per stage instead of pages of progress bars.
Opened by hand in JupyterLab, a notebook shows its progress bars and writes under scratch/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import yaml

from llome.io import atomic_path


KERNEL_NAME = "llome-this-interpreter"


@contextmanager
def this_interpreter_kernel():
    """A kernel spec for sys.executable, found before any installed one, for as long as the block runs."""
    with tempfile.TemporaryDirectory(prefix="llome-kernel-") as root:
        spec = Path(root) / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"llome ({sys.executable})", "language": "python"}))
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = root if previous is None else root + os.pathsep + previous
        try:
            yield KERNEL_NAME
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous


def run_notebook(notebook: str | Path, parameters: dict, reports_dir: str | Path = "reports",
                 name: str | None = None, log_output: bool = True) -> Path:
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    stem = name or notebook.stem
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    executed = reports_dir / f"{stem}.ipynb"
    parameters = {"progress": False, **parameters}
    with atomic_path(executed) as tmp, this_interpreter_kernel() as kernel:
        papermill.execute_notebook(str(notebook), str(tmp), parameters=parameters, kernel_name=kernel,
                                   cwd=str(Path.cwd()), log_output=log_output, progress_bar=False)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    with atomic_path(reports_dir / f"{stem}.html") as tmp:
        tmp.write_text(body)
    return executed


def setup(progress: bool = True) -> Path:
    """A notebook's first call: work from the project root, show the library's log lines, readable tables."""
    import pandas as pd

    root = enter_project_root()
    # tqdm.auto (imported by datasets and transformers) warns when ipywidgets is absent; it falls back to text bars
    warnings.filterwarnings("ignore", message="IProgress not found")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("llome")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.precision", 4)
    if not progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it for every bar, the trainers' included
        logging.getLogger("transformers").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
    return root


def enter_project_root() -> Path:
    """JupyterLab starts a notebook in notebooks/, papermill in the project root: make both the root."""
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() and (candidate / "params.yaml").exists():
            os.chdir(candidate)
            return candidate
    raise FileNotFoundError(f"no dvc.yaml and params.yaml above {here}: open the notebook inside the project")


def _parse_value(text: str):
    return yaml.safe_load(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run a pipeline notebook and export its report.")
    parser.add_argument("notebook")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--name", default=None, help="stem of the report files (default: the notebook's)")
    args = parser.parse_args(argv)
    parameters = {k: _parse_value(v) for k, v in args.parameter}
    started = time.perf_counter()
    run_notebook(args.notebook, parameters, args.reports, args.name)
    if "out_dir" in parameters:
        write_machine_record(Path(parameters["out_dir"]), args.name or Path(args.notebook).stem,
                             time.perf_counter() - started, parameters.get("config_path"))


def write_machine_record(out_dir: Path, stage: str, seconds: float, config_path: str | None) -> None:
    """Where and how long a stage ran, beside its data: `.dvcignore` keeps it out of the data's md5."""
    from llome import numerics
    from llome.compare import MACHINE_FILE
    from llome.io import write_json

    threads = None
    if config_path and Path(config_path).exists():
        threads = json.loads(Path(config_path).read_text()).get("numerics", {}).get("threads")
    write_json(out_dir / MACHINE_FILE, {"stage": stage, "seconds": round(seconds, 1),
                                        "numerics": numerics.settings(threads), "machine": numerics.machine()})


if __name__ == "__main__":
    sys.exit(main())

