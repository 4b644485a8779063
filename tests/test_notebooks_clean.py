"""Every notebook in book/ is committed output-free: no cell outputs and null execution counts.

The book executes the chapters when it is built (and CI in smoke mode), so outputs in the
repository are never read; committed outputs would only make diffs unreadable and could show
numbers that no longer match the code. This covers every ``book/*.ipynb``, whether or not
_toc.yml lists it.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in book/"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_outputs_and_null_execution_counts(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    problems = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} (id {cell.get('id')}) has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} (id {cell.get('id')}) has execution_count {cell['execution_count']}")
    assert not problems, f"{notebook.name}: " + "; ".join(problems) + " (clear the outputs before committing)"
