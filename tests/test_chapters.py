"""Every chapter notebook listed in _toc.yml runs end to end in smoke mode.

Each notebook is executed by papermill with ``SMOKE = True`` injected after its ``parameters``
cell, in a fresh ``python3`` kernel whose working directory is ``book/`` (as when a reader opens
it), writing the executed copy to a temporary directory. The wall time of each chapter is
printed and recorded as a test property (``--junitxml`` reports keep it).
"""

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
