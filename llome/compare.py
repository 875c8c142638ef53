"""Does a run reproduce another bit for bit? Compares the data outputs recorded in two dvc.lock files.

    python -m llome.compare                    # this checkout's dvc.lock against the committed one (git HEAD)
    python -m llome.compare --against A.lock --lock B.lock

A run's identity is the md5 of every data output (`data/...`) and of `metrics/summary.json`. Reports and
figures are left out: executed notebooks carry their run's times, and PNGs are drawn from `data/plots`, which
is compared. Files that only describe how a run went (timings, the machine) are kept out of those md5s by
`.dvcignore`. Each run's CPU and numerics come from the `machine.json` its stages wrote beside their data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

COMPARED_PREFIXES = ("data/", "metrics/summary.json")
MACHINE_FILE = "machine.json"


def read_lock(text: str, name: str) -> dict:
    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{name} is not valid YAML: {error}") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise ValueError(f"{name} has no 'stages' mapping: is it a dvc.lock?")
    return lock


def fingerprint(lock: dict) -> dict[str, str]:
    """{output path: md5} of every compared output in a parsed dvc.lock, sorted by path."""
    found = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"].startswith(COMPARED_PREFIXES):
                found[out["path"]] = out["md5"]
    return dict(sorted(found.items()))


def differences(expected: dict[str, str], actual: dict[str, str]) -> dict[str, list[str]]:
    return {
        "match": [p for p in expected if actual.get(p) == expected[p]],
        "differ": [p for p in expected if p in actual and actual[p] != expected[p]],
        "missing": [p for p in expected if p not in actual],
        "extra": [p for p in actual if p not in expected],
    }


def machines(root: Path) -> dict[str, dict]:
    """{stage output directory: its machine record} under `root/data`."""
    return {str(p.parent.relative_to(root)): json.loads(p.read_text())
            for p in sorted((root / "data").glob(f"**/{MACHINE_FILE}"))}


def describe(records: dict[str, dict]) -> str:
    seen = sorted({f"{r['machine']['cpu']} ({', '.join(r['machine'].get('cpu_flags', [])) or 'no AVX'}); "
                   f"numerics {r['numerics']['mode']}, {r['numerics'].get('threads', '?')} threads"
                   for r in records.values()})
    return "; ".join(seen) if seen else "not recorded"


def committed_lock(root: Path, revision: str = "HEAD") -> str:
    done = subprocess.run(["git", "show", f"{revision}:dvc.lock"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"no dvc.lock at {revision}: {done.stderr.strip()}")
    return done.stdout


def committed_machines(root: Path, revision: str = "HEAD") -> dict:
    done = subprocess.run(["git", "show", f"{revision}:docs/reports/{MACHINE_FILE}"], cwd=root, capture_output=True,
                          text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def report(expected: dict[str, str], actual: dict[str, str]) -> tuple[str, bool]:
    diff = differences(expected, actual)
    lines = [f"  same      {p}" for p in diff["match"]] + [f"  DIFFERENT {p}" for p in diff["differ"]]
    lines += [f"  MISSING   {p} (not in this run)" for p in diff["missing"]]
    lines += [f"  extra     {p} (not in the reference)" for p in diff["extra"]]
    same = not (diff["differ"] or diff["missing"])
    verdict = (f"{len(diff['match'])} of {len(expected)} outputs identical: "
               + ("the run reproduces the reference bit for bit" if same else "the run does NOT reproduce it"))
    return "\n".join([*lines, verdict]), same


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default="dvc.lock", help="the run to check (default: this checkout's dvc.lock)")
    parser.add_argument("--against", default=None, help="the reference dvc.lock (default: the committed one)")
    parser.add_argument("--root", default=".")
    args = parser.parse_args(argv)
    root = Path(args.root)
    lock_path = root / args.lock
    if not lock_path.exists():
        raise SystemExit(f"{lock_path} does not exist: run `make repro` first")
    actual = fingerprint(read_lock(lock_path.read_text(), str(lock_path)))
    if args.against:
        expected = fingerprint(read_lock(Path(args.against).read_text(), args.against))
        reference_machine = "not recorded"
    else:
        expected = fingerprint(read_lock(committed_lock(root), "the committed dvc.lock"))
        reference_machine = describe(committed_machines(root))
    text, same = report(expected, actual)
    print(f"reference run: {reference_machine}")
    print(f"this run:      {describe(machines(root))}")
    print(text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
