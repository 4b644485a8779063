"""Structure figures of the package and the book (issue "One sampler per paper box"): parameters
and body lines of each public sampler, lines of code in the chapters, and the package's imports
floor by floor. Reads the source as text (``ast``); imports nothing from the package.

    python scripts/measure_structure.py [--chapters-out DIR]   # DIR: chapters' code as .py, for `duplicates`
"""
import argparse
import ast
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLERS = ("sample", "slicewise", "diffusion_mbir", "dds", "dps")


def functions(path):
    tree = ast.parse(path.read_text())
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def body_lines(fn):
    """Lines of a function's body without its docstring."""
    body = fn.body[1:] if ast.get_docstring(fn) else fn.body
    return body[-1].end_lineno - body[0].lineno + 1


def n_params(fn):
    a = fn.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)


def package_imports():
    """module -> the package modules it imports (at top level or inside functions)."""
    out = {}
    for p in sorted((ROOT / "dmbir_edu").glob("*.py")):
        deps = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.level == 1:
                deps |= {n.module} if n.module else {a.name for a in n.names}
        out[p.stem] = sorted(deps - {p.stem})
    return out


def floors(imports):
    """Each module's floor: 0 if it imports no package module, else 1 + its highest import."""
    floor = {}
    def of(m, seen=()):
        if m not in floor:
            if m in seen:
                raise ValueError(f"import cycle through {m}")
            floor[m] = 1 + max((of(d, seen + (m,)) for d in imports.get(m, ()) if d in imports), default=-1)
        return floor[m]
    for m in imports:
        of(m)
    return floor


def chapter_code(out=None):
    lines = {}
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        src = "\n\n".join("".join(c["source"]) for c in cells)
        lines[nb.stem] = sum(1 for s in src.splitlines() if s.strip() and not s.strip().startswith(("#", "%", "!")))
        if out:
            (out / f"{nb.stem}.py").write_text(src)
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--chapters-out", type=pathlib.Path)
    a = p.parse_args()
    print("public samplers: parameters, body lines (no docstring)")
    for path in sorted((ROOT / "dmbir_edu").glob("*.py")):
        for name, fn in functions(path).items():
            if path.stem in ("sampling", "variants") and (name in SAMPLERS or name.endswith("_variant")):
                print(f"  {path.stem}.{name:<22}{n_params(fn):>4} params {body_lines(fn):>5} lines")
    package = sum(1 for p in (ROOT / "dmbir_edu").glob("*.py") for s in p.read_text().splitlines() if s.strip())
    if a.chapters_out:
        a.chapters_out.mkdir(parents=True, exist_ok=True)
    chapters = chapter_code(a.chapters_out)
    print(f"lines of code in the chapters: {sum(chapters.values())} (package: {package} non-blank lines)")
    print("  " + ", ".join(f"{k} {v}" for k, v in chapters.items()))
    imports = package_imports()
    floor = floors(imports)
    print("imports, floor by floor (a module imports only from floors below it):")
    for f in range(max(floor.values()) + 1):
        here = [f"{m} <- {', '.join(imports[m]) or '-'}" for m in sorted(floor) if floor[m] == f]
        print(f"  floor {f}: " + "; ".join(here))


if __name__ == "__main__":
    main()
