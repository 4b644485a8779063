"""Build time and peak memory of ``ParallelBeamCT(n, sparse_view_angles(views))``.

Each construction runs in a fresh Python process, so that its peak resident set size
(``resource.getrusage(...).ru_maxrss``) is that construction's alone (torch's own allocator is
invisible to tracemalloc). Prints, per image size, the median wall time of ``--repeats`` runs,
the largest peak RSS, and the RSS after ``import torch, dmbir_edu`` (the floor under the peak).

    python scripts/measure_ct_build.py                       # this checkout
    python scripts/measure_ct_build.py --src /tmp/old        # another one, e.g. an older commit:
    mkdir -p /tmp/old && git archive <commit> dmbir_edu | tar -x -C /tmp/old
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
if int(sys.argv[4]) > 0:
    torch.set_num_threads(int(sys.argv[4]))
import dmbir_edu
from dmbir_edu.ct import ParallelBeamCT, sparse_view_angles
assert dmbir_edu.__file__.startswith(sys.argv[1]), dmbir_edu.__file__
n, views = int(sys.argv[2]), int(sys.argv[3])
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
A = ParallelBeamCT(n, sparse_view_angles(views))
seconds = time.perf_counter() - t
print(json.dumps(dict(seconds=seconds, peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      floor_kib=floor, nnz=A.S.values().numel())))
"""


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(prog="python scripts/measure_ct_build.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--src", default=root, help="directory that contains the dmbir_edu package to measure")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="image sizes n (n x n pixels)")
    p.add_argument("--views", type=int, default=180, help="number of views, sparse_view_angles(views)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in each run; 0: torch's default")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per size; the time is their median")
    args = p.parse_args(argv)
    src = os.path.abspath(args.src)
    print(f"{src}: {cpu_name()}, {os.cpu_count()} CPUs, {args.views} views, median of {args.repeats}, "
          f"threads {args.threads or 'default'}")
    print(f"{'n':>5} {'seconds':>8} {'peak GiB':>9} {'import GiB':>10} {'nnz(S)':>10}")
    for n in args.sizes:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, src, str(n), str(args.views), str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{n:>5} {statistics.median(r['seconds'] for r in runs):>8.2f} "
              f"{max(r['peak_kib'] for r in runs) / 2**20:>9.2f} {min(r['floor_kib'] for r in runs) / 2**20:>10.2f} "
              f"{runs[0]['nnz']:>10}", flush=True)


if __name__ == "__main__":
    main()
