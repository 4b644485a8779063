"""The DDS step-count curve of issue "DDS in seconds" (chapter "Making it fast"): DDS's PSNR
against its step count N and eta on the VALIDATION volumes of every task
(``experiments.dds_step_curve``: the reported protocol, 8 central slices, 2 repeats), one JSON file
of rows per (source, task) under runs/dds_steps/ (skipped when it exists: rerun to resume), then
the choice of the default step count (``experiments.choose_dds_steps``).

    OMP_NUM_THREADS=1 python scripts/dds_steps.py phantom     # 2 validation phantoms (prior phantom64)
    OMP_NUM_THREADS=1 python scripts/dds_steps.py real        # aorta (ct64) and brain1 (mr64)
    python scripts/dds_steps.py choose                        # the choice, from the files
    python scripts/dds_steps.py table                         # the markdown table of the book's appendix
"""
import json
import pathlib
import sys
import time

import torch

from dmbir_edu import experiments, tables
from dmbir_edu.train import machine

OUT = pathlib.Path(__file__).resolve().parent.parent / "runs" / "dds_steps"


def run(source):
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for task, settings in experiments.DDS_JOBS.items():
        path = OUT / f"{source}_{task}.json"
        if path.exists():
            continue
        t0 = time.perf_counter()
        rows = experiments.dds_step_curve({task: settings}, source=source, n_volumes=2 if source == "phantom" else 1)
        path.write_text(json.dumps(rows, indent=1, default=str))
        print(f"{path.name}: {len(rows)} rows, {time.perf_counter() - t0:.0f} s", flush=True)


def rows_of(source):
    return [r for p in sorted(OUT.glob(f"{source}_*.json")) for r in json.loads(p.read_text())]


def table():
    """Per (source, setting): the paired difference to the reference at every N, eta 0.85, and the
    smallest N within the tolerance at each eta."""
    ref = experiments.dds_label(*experiments.DDS_CURVE["reference"])
    steps, etas = experiments.DDS_CURVE["steps"], experiments.DDS_CURVE["etas"]
    print("| volumes | setting | " + " | ".join(f"N={n}" for n in steps) + " | smallest N (eta " +
          " / ".join(f"{e:g}" for e in etas) + ") |")
    print("|---" * (len(steps) + 3) + "|")
    for source in ("phantom", "real"):
        rows = rows_of(source)
        for cell in dict.fromkeys((r["task"], r["setting"]) for r in rows):
            part = [r for r in rows if (r["task"], r["setting"]) == cell]
            d = [next(iter(tables.paired(part, experiments.dds_label(n, 0.85), ref).values())) for n in steps]
            chosen = experiments.choose_dds_steps(part)
            print(f"| {source} | {cell[0]} {cell[1]} | " + " | ".join(f"{m:+.2f} ± {se:.2f}" for m, se, _ in d)
                  + " | " + " / ".join(str(chosen[e][0] or "-") for e in etas) + " |")


def choose():
    for source in ("phantom", "real"):
        rows = rows_of(source)
        if not rows:
            continue
        print(f"\n{source} validation volumes: smallest N within {experiments.DDS_TOLERANCE} dB of "
              f"N={experiments.DDS_CURVE['reference'][0]}, eta={experiments.DDS_CURVE['reference'][1]}")
        for eta, (n, cells) in experiments.choose_dds_steps(rows).items():
            diffs = "; ".join(f"{c[1]} {d:+.2f} +- {se:.2f}" for c, (d, se, _) in cells.items())
            print(f"  eta {eta:g}: N = {n}; {diffs}")


if __name__ == "__main__":
    {"phantom": lambda: run("phantom"), "real": lambda: run("real"), "choose": choose, "table": table}[sys.argv[1]]()
