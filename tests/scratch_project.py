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
    """Offline, and this interpreter's tools (dvc, accelerate) first on PATH."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def headless_chromium(browser: str, profile_dir: Path, *args: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}", *args]
