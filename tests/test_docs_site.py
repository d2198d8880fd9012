"""The README is a short tour with working links; docs/ builds as a strict mkdocs site whose
navigation lists every page, and a broken link fails that build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"),
               "-d", str(site)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_readme_is_a_short_tour():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "make quickstart" in text and "make test" in text
    assert "issues that follow" not in text and "the issue" not in text


def test_readme_links_point_at_files():
    text = (ROOT / "README.md").read_text()
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert any(t.startswith("docs/") for t in targets) and any(t.startswith("experiments/") for t in targets)
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_nav_lists_every_docs_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    assert sorted(pages) == sorted({p.name for p in DOCS.glob("*.md")})


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    result = mkdocs_build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "training" / "index.html").is_file()


@pytest.mark.slow
def test_broken_links_fail_the_build(tmp_path):
    """A link to a missing page and one to a missing section: the build fails naming each."""
    links = ["missing_page.md", "training.md#no-such-section"]
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    with (project / "docs" / "contributing.md").open("a") as f:
        f.writelines(f"\nSee [this]({link}).\n" for link in links)
    result = mkdocs_build(project, tmp_path / "site")
    assert result.returncode != 0
    for link in links:
        assert link in result.stderr
