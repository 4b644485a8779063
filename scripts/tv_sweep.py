"""The saved runs behind chapter 5's kernel-free TV sliders (``book.tv_sweep``): DiffusionMBIR on the
first validation phantom at 8 views, the reported protocol's data (a twice finer grid) with one
seed, its central 8 slices, 100 steps; lam and rho at 0 / 1/4 / 1 / 4 / 16 times their defaults,
TV along z, along all axes, or none. Rows and volumes go to runs/tv_sweep/ (rows.json,
volumes.pt); about 5 minutes on one core.

    python scripts/tv_sweep.py
"""
import json
import pathlib
import time

from dmbir_edu import book, data, experiments, tables

OUT = pathlib.Path(__file__).resolve().parent.parent / "runs" / "tv_sweep"
PROTOCOL = experiments.protocol_of(experiments.REPORTED, seeds=data.VALIDATION_SEEDS, n_volumes=1, repeats=(0,))

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = book.tv_sweep(PROTOCOL, keep=True)
    tables.save_volumes(rows, OUT / "volumes.pt")
    (OUT / "rows.json").write_text(json.dumps(rows, indent=1, default=str))
    for r in rows:
        print(f"{r['knobs']}: {tables.mean_over_axes(r):.2f} dB, flicker {r['flicker']:.2f}, {r['seconds']:.0f} s")
    print(f"{len(rows)} runs, {time.perf_counter() - t0:.0f} s")
