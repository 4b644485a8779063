"""Packaging and book-layout checks: cheap, no torch, no notebook execution.

- pyproject.toml and environment.yml list the same dependencies;
- every file in _toc.yml exists, every chapter notebook is in the toc,
  has exactly one cell tagged ``parameters`` and no committed outputs;
- _config.yml keeps the execution settings the book relies on.
"""

import json
import re
import tomllib
from pathlib import Path

import yaml
from test_chapters import toc_entries  # one walker of the _toc.yml tree

ROOT = Path(__file__).resolve().parents[1]

# conda-forge spells a few packages differently from PyPI.
CONDA_TO_PYPI = {"pytorch": "torch"}
# Not dependencies of the package: the interpreter and the installer.
IGNORED = {"python", "pip"}


def normalize(name):
    """PEP 503 normalisation: lower case, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec):
    """Name part of a pip or conda requirement such as ``odl==1.0.*``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, f"cannot parse requirement {spec!r}"
    return normalize(match.group(1))


def pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {requirement_name(s) for s in specs}


def environment_names():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the `pip:` section
            specs = [s for s in entry["pip"] if not s.startswith("-")]  # skip `-e .`
            names |= {requirement_name(s) for s in specs}
        else:
            name = requirement_name(entry)
            names.add(normalize(CONDA_TO_PYPI.get(name, name)))
    return names - IGNORED


def test_pyproject_and_environment_list_the_same_dependencies():
    pip_names, conda_names = pyproject_names(), environment_names()
    assert "torch" in pip_names and "jupyter-book" in pip_names
    assert pip_names == conda_names, (
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}; "
        f"only in environment.yml: {sorted(conda_names - pip_names)}"
    )


def test_python_versions_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]


def resolve(entry):
    """Jupyter Book lets a toc entry omit its suffix; find the actual file."""
    path = ROOT / entry
    if path.suffix in (".md", ".ipynb"):
        return path if path.exists() else None
    found = [p for p in (path.with_suffix(".md"), path.with_suffix(".ipynb")) if p.exists()]
    assert len(found) <= 1, f"{entry} is ambiguous: {found}"
    return found[0] if found else None


def toc_paths():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    assert toc["root"] == "book/intro"
    entries = toc_entries(toc)
    assert len(entries) == len(set(entries)), "a file is listed twice in _toc.yml"
    return entries, [resolve(e) for e in entries]


def test_every_toc_entry_exists():
    entries, paths = toc_paths()
    missing = [e for e, p in zip(entries, paths) if p is None]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_book_notebook_is_in_the_toc():
    # only_build_toc_files: true would silently drop a chapter missing from the toc
    _, paths = toc_paths()
    listed = {p for p in paths if p is not None}
    orphans = [p.name for p in sorted((ROOT / "book").glob("*.ipynb")) if p not in listed]
    assert not orphans, f"notebooks in book/ but not in _toc.yml: {orphans}"


def test_notebooks_have_one_parameters_cell_and_no_outputs():
    _, paths = toc_paths()
    notebooks = [p for p in paths if p is not None and p.suffix == ".ipynb"]
    problems = []
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        if len(tagged) != 1:
            problems.append(f"{path.name}: {len(tagged)} cells tagged 'parameters', need 1")
        elif tagged[0]["cell_type"] != "code":
            problems.append(f"{path.name}: the 'parameters' cell is not a code cell")
        for i, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            if cell.get("outputs") or cell.get("execution_count") is not None:
                problems.append(f"{path.name}: cell {i} has committed outputs")
    assert not problems, "\n".join(problems)


def test_config_keeps_execution_settings():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    execute = config["execute"]
    assert execute["raise_on_error"] is True
    assert execute["timeout"] > 30, "JB1's default 30 s cell timeout is too short"
    assert (ROOT / config["bibtex_bibfiles"][0]).exists()
    # the widget renderer is vendored so that the built book works offline
    for script in config["sphinx"]["config"]["nb_ipywidgets_js"]:
        assert "://" not in script, f"{script} would load from a CDN"
        static = config["sphinx"]["config"]["html_static_path"]
        assert any((ROOT / s / script).exists() for s in static), f"{script} not vendored"


def test_every_chapter_installs_the_package_where_it_is_missing():
    # Colab, Binder and downloaded notebooks start without dmbir_edu: the first code cell
    # installs it from the repository named in pyproject.toml (a no-op where it is installed), at
    # the release tag of the version in pyproject.toml (the version the page was built with; the same
    # tag book.runs_dir fetches the saved runs from): bumping the version means updating every page.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    source_url = f"{project['urls']['Source']}@v{project['version']}"
    _, paths = toc_paths()
    problems = []
    for path in (p for p in paths if p is not None and p.suffix == ".ipynb"):
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        first = "".join(code[0]["source"])
        if 'find_spec("dmbir_edu") is None' not in first or f"git+{source_url}\"" not in first:
            problems.append(f"{path.name}: the first code cell does not install dmbir_edu from {source_url}")
    assert not problems, "\n".join(problems)


def test_pytest_does_not_load_odl_plugin():
    """odl 1.0's pytest plugin breaks pytest >= 9.1 at start-up (no test runs at all, so only CI's
    fresh venv can show that break); it stays disabled for as long as odl declares it."""
    from importlib.metadata import entry_points

    declared = {ep.name for ep in entry_points(group="pytest11") if ep.dist and ep.dist.name == "odl"}
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    for name in declared:
        assert f"-p no:{name}" in addopts, f"odl declares pytest plugin {name!r}; disable it in pyproject's addopts"


def test_publishing_workflow_grants_pages_rights_to_the_deploy_job_only_and_caches_what_the_book_reads():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    assert wf["permissions"] == {}
    assert wf["jobs"]["build"]["permissions"] == {"contents": "read"}
    assert wf["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    steps = wf["jobs"]["build"]["steps"]
    keys = next(s for s in steps if s.get("id") == "key")["run"]
    for covered in ("dmbir_edu/**", "pyproject.toml", "runs/**", "resolved-requirements.txt", "book/**"):
        assert covered in keys, f"the cache key leaves out {covered}"
    save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save"))
    assert save["if"].startswith("always()")          # a failed build keeps what it executed
    restore = next(s for s in steps if s.get("uses", "").startswith("actions/cache/restore"))
    assert save["with"]["key"] == restore["with"]["key"] and "github.run_id" in save["with"]["key"]


def test_every_dependency_that_could_break_us_has_an_upper_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    unbounded = [s for s in specs if not re.search(r"<|==", s)]
    assert not unbounded, f"no upper bound: {unbounded}"
    assert project["license"] == "MIT" and (ROOT / "LICENSE").exists() and (ROOT / "LICENSE-BOOK.md").exists()
