"""Every chapter notebook listed in _toc.yml runs end to end in smoke mode.

Each notebook is executed by papermill with ``SMOKE = True`` injected after its ``parameters``
cell, in a fresh ``python3`` kernel whose working directory is ``book/`` (as when a reader opens
it), writing the executed copy to a temporary directory. The wall time of each chapter is
printed and recorded as a test property (``--junitxml`` reports keep it).
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_entries(node):
    """All ``file:`` entries of a _toc.yml tree (root included), in reading order."""
    entries = [node["root"]] if "root" in node else []
    if "file" in node:
        entries.append(node["file"])
    for key in ("parts", "chapters", "sections"):
        for child in node.get(key, []):
            entries += toc_entries(child)
    return entries


def chapter_notebooks():
    """The notebooks that _toc.yml lists (an entry may omit its suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    notebooks = []
    for entry in toc_entries(toc):
        path = ROOT / entry
        path = path if path.suffix == ".ipynb" else path.with_suffix(".ipynb")
        if path.exists():
            notebooks.append(path)
    return notebooks


SMOKE_DIR = ROOT / "_build" / "smoke"      # .ci/smoke_book.py renders these executed copies


def execute_smoke(notebook, out_dir=SMOKE_DIR):
    """Run ``notebook`` with ``SMOKE = True`` into ``out_dir`` (same relative path); returns seconds."""
    target = out_dir / notebook.relative_to(ROOT)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(target),
        parameters={"SMOKE": True},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
        execution_timeout=600,
    )
    return time.perf_counter() - start


@pytest.mark.parametrize("notebook", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_runs_in_smoke_mode(notebook, capsys, record_property):
    seconds = execute_smoke(notebook)
    record_property("wall_time_s", round(seconds, 1))
    with capsys.disabled():  # show the timing even under pytest's output capture
        print(f"\n{notebook.relative_to(ROOT)}: {seconds:.1f} s in smoke mode")


def debian_chapters():
    """The chapters whose code can reach a Debian-sourced volume (names one, or walks the splits)."""
    from dmbir_edu import fetch

    debian = [n for n, s in fetch.SOURCES.items() if s.client == "apt"]
    found = []
    for notebook in chapter_notebooks():
        code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"]
                         if c["cell_type"] == "code")
        if any(re.search(rf"\b{n}\b", code) for n in debian) or "dm.data.REAL" in code:
            found.append(notebook)
    return found


def _no_apt_lists(bin_dir):
    """Binder's condition: apt-get exists, its package lists were deleted (and there is no root)."""
    bin_dir.mkdir()
    for cmd in ("apt-get", "apt-cache"):
        (bin_dir / cmd).write_text("#!/bin/sh\necho 'E: No packages found' >&2\nexit 100\n")
        (bin_dir / cmd).chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("notebook", debian_chapters(), ids=lambda p: p.stem)
def test_chapter_runs_where_apt_cannot_fetch_and_says_what_it_left_out(notebook, tmp_path, monkeypatch, capsys):
    """A cache with only the pip-sourced volumes and an apt without package lists: the chapter runs,
    leaving each Debian-sourced volume out with one line saying why."""
    from dmbir_edu import fetch

    cache = tmp_path / "cache"
    for name, src in fetch.SOURCES.items():
        if src.client == "pip":
            target = cache / "files" / fetch.cached_path(name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fetch.fetch(name, print_fn=lambda m: None), target)
    monkeypatch.setenv("DMBIR_EDU_CACHE", str(cache))
    monkeypatch.setenv("PATH", f"{_no_apt_lists(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    seconds = execute_smoke(notebook, tmp_path / "out")
    executed = (tmp_path / "out" / notebook.relative_to(ROOT)).read_text()
    assert "is left out: it comes from the Debian package" in executed and "does not list" in executed
    assert not (cache / "files" / "cranium.inv3").exists()
    with capsys.disabled():
        print(f"\n{notebook.relative_to(ROOT)}: {seconds:.1f} s in smoke mode without apt's package lists")
