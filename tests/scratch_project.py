"""What the pipeline tests share: the project's files, the environment its tools run in, a headless browser."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a scratch copy of the project needs."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    return [f for f in listed if f and (ROOT / f).is_file()]


def tool_env() -> dict:
    """Offline, this interpreter's tools (dvc, accelerate) first on PATH, and this checkout's LaMBO environment and
    models/, which a scratch copy does not have (llome.lambo.VENV_VARIABLE, llome.stages.prompted.CHECKOUT_VARIABLE)."""
    return {"LLOME_LAMBO_VENV": str(ROOT / ".lambo-venv"), "LLOME_CHECKOUT": str(ROOT), **os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def headless_chromium(browser: str, profile_dir: Path, *args: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}", *args]


def copy_project(workdir: Path) -> Path:
    """The project's files in `workdir`, as a fresh clone would have them, in a git repository of its own."""
    import shutil

    for name in project_files():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, workdir / name)
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)  # DVC keeps .gitignore files there
    return workdir


def committed_copy(workdir: Path) -> Path:
    """`copy_project` with everything committed: DVC experiments are commits on top of a baseline."""
    copy_project(workdir)
    for command in (["config", "user.name", "llome test"], ["config", "user.email", "llome-test@localhost"],
                    ["add", "-A"], ["commit", "-qm", "baseline"]):
        subprocess.run(["git", *command], cwd=workdir, check=True, capture_output=True)
    return workdir


def run_in(workdir: Path, *command: str) -> str:
    """A command's stdout, run in `workdir` with `tool_env()`; its failure shows the end of both outputs."""
    done = subprocess.run(command, cwd=workdir, env=tool_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def dvc_in(workdir: Path, *args: str) -> str:
    """`dvc <args>` in `workdir`, from this interpreter's environment."""
    return run_in(workdir, sys.executable, "-m", "dvc", *args)
