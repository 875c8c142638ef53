"""Profile overrides for bench scripts: `PATH=VALUE` on a resolved profile, where PATH is dotted.

    from overrides import override    # a bench script's own directory is on sys.path
"""

from __future__ import annotations


def override(cfg: dict, path: str, value, may_add: bool = False) -> None:
    """Sets cfg[a][b][c] = value for path "a.b.c"; a leaf the profile lacks is an error unless `may_add`."""
    *parents, leaf = path.split(".")
    node = cfg
    for key in parents:
        if not isinstance(node, dict) or key not in node:
            raise SystemExit(f"override {path}: the profile has no setting '{key}' on that path")
        node = node[key]
    if leaf not in node and not may_add:
        raise SystemExit(f"override {path}: the profile has no setting '{path}'")
    node[leaf] = value
