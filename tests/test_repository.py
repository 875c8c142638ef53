"""The repository stands alone: it cites no file it does not have."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_text_files():
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if not (ROOT / name).is_file():
            continue
        try:
            yield name, (ROOT / name).read_text()
        except UnicodeDecodeError:
            continue


def test_no_file_cites_a_briefing_or_folder_outside_the_repository():
    outside = re.compile(r"PAPER\.md|\.\./shared|shared/fixtures")
    offenders = [name for name, text in tracked_text_files() if name != "tests/test_repository.py" and outside.search(text)]
    assert offenders == []


def test_every_method_section_cited_exists_in_docs_method():
    sections = set(re.findall(r"^## §(\d)", (ROOT / "docs" / "method.md").read_text(), flags=re.M))
    cited = {number for _, text in tracked_text_files() for number in re.findall(r"docs/method\.md §(\d)", text)}
    assert cited and cited <= sections, sorted(cited - sections)
