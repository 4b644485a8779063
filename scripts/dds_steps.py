"""The DDS step-count curve of issue "DDS in seconds" (chapter "Making it fast"): DDS's PSNR
against its step count N and eta on the VALIDATION volumes of every task
(``experiments.dds_step_curve``: the reported protocol, 8 central slices, 2 repeats), one JSON file
of rows per (source, task) under runs/dds_steps/ (skipped when it exists: rerun to resume), then
the choice of the default step count (``experiments.choose_dds_steps``).

    OMP_NUM_THREADS=1 python scripts/dds_steps.py phantom     # 2 validation phantoms (prior phantom64)
    OMP_NUM_THREADS=1 python scripts/dds_steps.py real        # aorta (ct64) and brain1 (mr64)
    python scripts/dds_steps.py choose                        # the choice, from the files
"""
import json
import pathlib
import sys
import time

import torch

from dmbir_edu import experiments
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


def choose():
    for source in ("phantom", "real"):
        rows = [r for p in sorted(OUT.glob(f"{source}_*.json")) for r in json.loads(p.read_text())]
        if not rows:
            continue
        print(f"\n{source} validation volumes: smallest N within {experiments.DDS_TOLERANCE} dB of "
              f"N={experiments.DDS_CURVE['reference'][0]}, eta={experiments.DDS_CURVE['reference'][1]}")
        for eta, (n, cells) in experiments.choose_dds_steps(rows).items():
            diffs = "; ".join(f"{c[1]} {d:+.2f} +- {se:.2f}" for c, (d, se, _) in cells.items())
            print(f"  eta {eta:g}: N = {n}; {diffs}")


if __name__ == "__main__":
    {"phantom": lambda: run("phantom"), "real": lambda: run("real"), "choose": choose}[sys.argv[1]]()
