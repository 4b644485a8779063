"""The evidence table of issue "Evidence a reviewer would accept": every cell of
``experiments.REPORTED_CELLS`` under the reported protocol (``experiments.REPORTED``: data from a
twice finer grid, 3 repeats, the central 8 slices) and under the old one
(``experiments.OLD_PROTOCOL``: same grid, inverse crime, one repeat), rows saved as JSON under
runs/evidence/ (one file per cell, skipped when it exists: rerun to resume). The appendix
"Results" reads these files.

    python scripts/evidence.py new      # the reported protocol, 100 steps (about 1 h on one core)
    python scripts/evidence.py new abdomen_sv8   # only the cells named (new or old)
    python scripts/evidence.py old      # the old protocol, the same cells
    python scripts/evidence.py long     # 1000 steps, lung2, 8 views, the reported protocol
    python scripts/evidence.py released # the dmbir_released rows again, into NAME@released.json files
                                        # that replace those rows (the release's constants were first
                                        # converted without the grid factor n / 256, and diverged)
    python scripts/evidence.py before   # lung2, 90 degrees, the coupled samplers at their CG budgets before
                                        # the limited-angle fix (DiffusionMBIR 1, DDS 5): the "before" of
                                        # lung2_la90, same prior, data and seeds
    python scripts/evidence.py compare  # each cell, new beside old, and the verdicts that flipped
    python scripts/evidence.py table    # the markdown tables of the closing note, from the files
"""
import json
import pathlib
import sys
import time

from dmbir_edu import experiments, tables
from dmbir_edu.experiments import OLD_PROTOCOL, REPORTED, REPORTED_CELLS

OUT = pathlib.Path(__file__).resolve().parent.parent / "runs" / "evidence"
REFERENCE = ("admm_tv", "slicewise")


def run_cell(name, protocol, n_steps=None, methods=None, suffix=""):
    path = OUT / f"{name}{suffix}.json"
    if path.exists():
        return
    t0 = time.perf_counter()
    out = experiments.run_cell(name, protocol, n_steps=n_steps, methods=methods)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"{name}: {len(out)} rows, {time.perf_counter() - t0:.0f} s", flush=True)


def versus(rec, ref):
    d = rec.get(f"vs {ref}")
    return "" if d is None else f"{d[0]:+.2f} +- {d[1]:.2f} ({d[2]})"


def table(names):
    """Markdown: per cell and method, mean +- sd of the plane-averaged PSNR, flicker, dz ratio, and
    the paired difference to each reference with its standard error and verdict."""
    lines = ["| cell | method | n | PSNR (mean over planes) | flicker | dz ratio | " +
             " | ".join(f"- {r}" for r in REFERENCE) + " |", "|---" * (6 + len(REFERENCE)) + "|"]
    for name in names:
        for rec in tables.compared(tables.load_cell(OUT, name), REFERENCE):
            lines.append(f"| {name} | {rec['method']} | {rec['n']} | {rec['psnr']:.2f} +- {rec['psnr_sd']:.2f} | "
                         f"{rec.get('flicker', float('nan')):.2f} | {rec.get('dz_ratio', float('nan')):.2f} | "
                         + " | ".join(versus(rec, r) for r in REFERENCE) + " |")
    return "\n".join(lines)


def side_by_side(names):
    """One markdown table per cell: the reported protocol beside the old one, and the margins over
    ADMM-TV whose sign differs between them."""
    out, flipped = [], []
    for name in names:
        new = tables.compared(tables.load_cell(OUT, name), REFERENCE)
        if not new:
            continue
        old = {r["method"]: r for r in tables.compared(tables.load_cell(OUT, name + "@old"), REFERENCE)}
        out += [f"\n**{name}**\n", "| method | PSNR, new | flicker | dz | vs ADMM-TV, new | vs slice-wise, new | "
                "PSNR, old | vs ADMM-TV, old |", "|---|---|---|---|---|---|---|---|"]
        for rec in new:
            m, o = rec["method"], old.get(rec["method"])
            d, d_old = rec.get("vs admm_tv"), (o or {}).get("vs admm_tv")
            old_cell = "" if d_old is None else f"{d_old[0]:+.2f} (n={o['n']})"
            out.append(f"| {m} | {rec['psnr']:.2f} +- {rec['psnr_sd']:.2f} | {rec['flicker']:.2f} | "
                       f"{rec['dz_ratio']:.2f} | {versus(rec, 'admm_tv')} | {versus(rec, 'slicewise')} | "
                       + (f"{o['psnr']:.2f} | {old_cell} |" if o else " | |"))
            if d and d_old and (d[0] > 0) != (d_old[0] > 0):
                flipped.append(f"{name}: {m} vs ADMM-TV {d_old[0]:+.2f} (old, one seed) -> "
                               f"{d[0]:+.2f} +- {d[1]:.2f} (new)")
    return "\n".join(out) + "\n\nSign of the margin over ADMM-TV flipped:\n" + "\n".join(f"- {f}" for f in flipped)


def main(what, names=()):
    OUT.mkdir(parents=True, exist_ok=True)
    old = experiments.protocol_of(REPORTED, **OLD_PROTOCOL)
    unknown = set(names) - set(REPORTED_CELLS)
    if unknown:
        raise SystemExit(f"unknown cell(s) {sorted(unknown)}; cells: {list(REPORTED_CELLS)}")
    if what == "new":
        for name in names or REPORTED_CELLS:
            run_cell(name, REPORTED)
    elif what == "old":
        for name in names or REPORTED_CELLS:
            run_cell(name + "@old", old)
    elif what == "long":
        run_cell("lung2_sv8@1000", REPORTED, n_steps=1000, methods=["admm_tv", "slicewise", "diffusionmbir",
                                                                      "dmbir_released"])
    elif what == "before":
        path = OUT / "lung2_la90@cg_before.json"
        if not path.exists():
            rows = experiments.run_cell("lung2_la90", REPORTED, methods=["admm_tv", "diffusionmbir", "dds"],
                                        overrides={"diffusionmbir": dict(n_cg=1), "dds": dict(n_cg=5)})
            path.write_text(json.dumps(rows, indent=1, default=str))
        print(table(["lung2_la90@cg_before", "lung2_la90"]))
    elif what == "released":
        for name, cell in REPORTED_CELLS.items():
            if cell.task != "mri":
                run_cell(name, REPORTED, methods=["dmbir_released"], suffix="@released")
                run_cell(name + "@old", old, methods=["dmbir_released"], suffix="@released")
    elif what == "compare":
        print(side_by_side(list(REPORTED_CELLS)))
    elif what == "table":
        print("## Reported protocol (finer-grid data, 3 repeats)\n")
        print(table(list(REPORTED_CELLS) + ["lung2_sv8@1000"]))
        print("\n## Old protocol (inverse crime, one repeat)\n")
        print(table([n + "@old" for n in REPORTED_CELLS]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:])
