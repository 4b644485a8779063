"""The evidence table of issue "Evidence a reviewer would accept": every cell under the reported
protocol (``experiments.REPORTED``: data from a twice finer grid, 3 repeats, the central 8 slices)
and under the old one (same grid, inverse crime, one repeat), rows saved as JSON under
runs/evidence/ (one file per cell, skipped when it exists: rerun to resume).

    python scripts/evidence.py new      # the reported protocol, 100 steps (about 1 h on one core)
    python scripts/evidence.py old      # the old protocol, the same cells
    python scripts/evidence.py long     # 1000 steps, lung2, 8 views, the reported protocol
    python scripts/evidence.py released # the dmbir_released rows again, into NAME@released.json files
                                        # that replace those rows (the release's constants were first
                                        # converted without the grid factor n / 256, and diverged)
    python scripts/evidence.py table    # the markdown tables of the closing note, from the files
"""
import json
import pathlib
import sys
import time

from dmbir_edu import experiments, tables
from dmbir_edu.experiments import REPORTED

OUT = pathlib.Path(__file__).resolve().parent.parent / "runs" / "evidence"
CT = ["fbp", "admm_tv", "slicewise", "slicewise_cg1", "diffusionmbir", "dmbir_released", "dds"]
MR = ["adjoint", "admm_tv", "slicewise", "slicewise_cg1", "diffusionmbir", "dds"]
CELLS = {   # name -> (task, setting, source, n_volumes, rows)
    **{f"phantom_sv{v}": ("sparse_view", v, "phantom", 2, CT) for v in (8, 4, 2)},
    **{f"lung2_sv{v}": ("sparse_view", v, "real", 1, CT) for v in (8, 4, 2)},
    "lung2_la90": ("limited_angle", 90.0, "real", 1, CT),
    **{f"mr_{m}": ("mri", m, "real", 1, MR) for m in ("uniform1d-x4", "uniform1d-x8")},
}
OLD = dict(fine=1, repeats=(0,))


def run_cell(name, protocol, n_steps=None, methods=None, suffix=""):
    path = OUT / f"{name}{suffix}.json"
    if path.exists():
        return
    task, setting, source, n_volumes, rows = CELLS[name.split("@")[0]]
    t0 = time.perf_counter()
    out = experiments.run(task, [setting], methods or rows, protocol, source=source, n_volumes=n_volumes,
                          n_steps=n_steps, progress=False)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"{name}: {len(out)} rows, {time.perf_counter() - t0:.0f} s", flush=True)


def table(names, reference=("admm_tv", "slicewise")):
    """Markdown: per cell and method, mean +- sd of the plane-averaged PSNR, flicker, dz ratio, and
    the paired difference to each reference with its standard error and verdict."""
    lines = ["| cell | method | n | PSNR (mean over planes) | flicker | dz ratio | " +
             " | ".join(f"- {r}" for r in reference) + " |", "|---" * (6 + len(reference)) + "|"]
    for name in names:
        path = OUT / f"{name}.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())
        again = OUT / f"{name}@released.json"
        if again.exists():                    # the release's rows made again (module docstring)
            rows = [r for r in rows if r["method"] != "dmbir_released"] + json.loads(again.read_text())
        diffs = {ref: {m: tables.paired(rows, m, ref) for m in dict.fromkeys(r["method"] for r in rows)}
                 for ref in reference}
        for rec in tables.summary(rows):
            cells = []
            for ref in reference:
                d = next(iter(diffs[ref][rec["method"]].values()), None)
                cells.append("" if d is None or rec["method"] == ref else
                             f"{d[0]:+.2f} +- {d[1]:.2f} ({tables.verdict(d[0], d[1])})")
            lines.append(f"| {name} | {rec['method']} | {rec['n']} | {rec['psnr']:.2f} +- {rec['psnr_sd']:.2f} | "
                         f"{rec.get('flicker', float('nan')):.2f} | {rec.get('dz_ratio', float('nan')):.2f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def load(name):
    """The rows of a cell file, with the dmbir_released rows of ``NAME@released.json`` if made."""
    path = OUT / f"{name}.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    again = OUT / f"{name}@released.json"
    if again.exists():
        rows = [r for r in rows if r["method"] != "dmbir_released"] + json.loads(again.read_text())
    return rows


def side_by_side(names):
    """One markdown table per cell: the reported protocol beside the old one, and the verdicts
    (through the tie band) that differ between them."""
    out, flipped = [], []
    for name in names:
        new, old = load(name), load(name + "@old")
        if not new:
            continue
        summ = {r["method"]: r for r in tables.summary(new)}
        summ_old = {r["method"]: r for r in tables.summary(old)}
        out += [f"\n**{name}**\n", "| method | PSNR, new | flicker | dz | vs ADMM-TV, new | vs slice-wise, new | "
                "PSNR, old | vs ADMM-TV, old |", "|---|---|---|---|---|---|---|---|"]
        for m, rec in summ.items():
            cells = []
            for rows, ref in ((new, "admm_tv"), (new, "slicewise")):
                d = next(iter(tables.paired(rows, m, ref).values()), None) if m != ref else None
                cells.append("" if d is None else f"{d[0]:+.2f} +- {d[1]:.2f} {tables.verdict(d[0], d[1])}")
            o = summ_old.get(m)
            d_old = next(iter(tables.paired(old, m, "admm_tv").values()), None) if o and m != "admm_tv" else None
            old_cell = "" if d_old is None else f"{d_old[0]:+.2f} (n={d_old[2]})"
            head = f"| {m} | {rec['psnr']:.2f} +- {rec['psnr_sd']:.2f} | {rec['flicker']:.2f} | {rec['dz_ratio']:.2f} |"
            out.append(head + " " + " | ".join(cells) + (f" | {o['psnr']:.2f} | {old_cell} |" if o else " | | |"))
            d = next(iter(tables.paired(new, m, "admm_tv").values()), None) if m != "admm_tv" else None
            if d and d_old and (d[0] > 0) != (d_old[0] > 0):
                flipped.append(f"{name}: {m} vs ADMM-TV {d_old[0]:+.2f} (old, one seed) -> "
                               f"{d[0]:+.2f} +- {d[1]:.2f} (new)")
    return "\n".join(out) + "\n\nSign of the margin over ADMM-TV flipped:\n" + "\n".join(f"- {f}" for f in flipped)


def main(what):
    OUT.mkdir(parents=True, exist_ok=True)
    if what == "new":
        for name in CELLS:
            run_cell(name, REPORTED)
    elif what == "old":
        for name in CELLS:
            run_cell(name + "@old", experiments.protocol_of(REPORTED, **OLD))
    elif what == "long":
        run_cell("lung2_sv8@1000", REPORTED, n_steps=1000, methods=["admm_tv", "slicewise", "diffusionmbir",
                                                                      "dmbir_released"])
    elif what == "released":
        for name, (task, *_) in CELLS.items():
            if task != "mri":
                run_cell(name, REPORTED, methods=["dmbir_released"], suffix="@released")
                run_cell(name + "@old", experiments.protocol_of(REPORTED, **OLD), methods=["dmbir_released"],
                         suffix="@released")
    elif what == "compare":
        print(side_by_side(list(CELLS)))
    elif what == "table":
        print("## Reported protocol (finer-grid data, 3 repeats)\n")
        print(table(list(CELLS) + ["lung2_sv8@1000"]))
        print("\n## Old protocol (inverse crime, one repeat)\n")
        print(table([n + "@old" for n in CELLS]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
