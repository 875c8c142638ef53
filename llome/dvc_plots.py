"""`dvc plots show` as a page that renders offline: the Vega libraries inlined, not fetched from a CDN.

    python -m llome.dvc_plots [-o dvc_plots]        (or `make plots`)

DVC's own page loads vega, vega-lite and vega-embed from the network. vl-convert ships the same
libraries as one script, so the page here carries them inline and opens from a file with no network.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from llome.io import atomic_path

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>llome: DVC plots</title>
  <script>{bundle}</script>
  <style>body {{ font-family: sans-serif; }} .vega-embed {{ margin: 12px; }}</style>
</head>
<body>
  <h1>llome: DVC plots</h1>
  {{plot_divs}}
</body>
</html>
"""


def offline_page_template() -> str:
    """A dvc-render page template with Vega, Vega-Lite and vega-embed inlined (globals, as DVC's divs expect)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle()
    # The bundle goes inside an inline <script>: a literal closing tag in it would end the element early.
    bundle = bundle.replace("</script", "<\\/script")
    return PAGE.format(bundle=bundle)


def show(out_dir: str | Path = "dvc_plots", project: str | Path = ".") -> Path:
    project = Path(project)
    template = project / ".dvc" / "tmp" / "offline_plots_template.html"
    with atomic_path(template) as tmp:
        tmp.write_text(offline_page_template())
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(template.resolve()),
                    "-o", str(out_dir)], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
    return project / out_dir / "index.html"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="dvc_plots")
    args = parser.parse_args(argv)
    print(show(args.out))


if __name__ == "__main__":
    main()
