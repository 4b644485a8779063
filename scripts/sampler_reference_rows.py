"""Write tests/data/sampler_rows.json: a digest of every sampler and variant on small, seeded runs,
so that a redesign of ``sampling`` can be checked against the numbers from before it
(tests/test_reference_rows.py). Each row: the output's mean, std and a fixed sample of voxels.
The calls below are those of the API at the commit named in the file (24970da, before the
redesign), and run only there; the test makes the same runs through today's API:

    git worktree add --detach /tmp/old 24970da && cd /tmp/old
    PYTHONPATH=. python scripts/sampler_reference_rows.py    # about 20 s, one thread as the tests
"""
import json
import pathlib
import subprocess

import torch

import dmbir_edu as dm
from dmbir_edu import data, sampling

ROOT = pathlib.Path(__file__).resolve().parent.parent
N = 5                                                    # diffusion steps of every run


def problems():
    x = data.phantom(data.VALIDATION_SEEDS[0], 64)
    ct = dm.ParallelBeamCT(64, dm.sparse_view_angles(8))
    mri = dm.CartesianMRI(dm.uniform1d_mask(64, 4, center_fraction=0.08, seed=0))
    return {"ct": (ct(x[30:33]), ct), "mri": (mri(x[30:33]), mri), "ct_cube": (ct(x), ct)}


def digest(t):
    """Mean, std and 32 voxels at fixed places (every voxel of a (D, 64, 64) volume can be chosen)."""
    t = t.detach().double().flatten()
    idx = torch.linspace(0, t.numel() - 1, 32).long()
    return dict(mean=t.mean().item(), std=t.std().item(), voxels=t[idx].tolist())


def main():
    torch.set_num_threads(1)          # as the tests run (tests/conftest.py): sums in the same order
    prior = dm.load_prior("phantom64")
    P = problems()
    g = lambda: torch.Generator().manual_seed(0)
    old = {   # name -> (problem, call at the old API)
        "sample": (None, lambda: sampling.sample(prior, 2, N, generator=g(), progress=False)),
        "sample_current": (None, lambda: sampling.sample(prior, 2, N, generator=g(), progress=False,
                                                         corrector_sigma="current")),
        "slicewise": ("ct", lambda y, A: sampling.slicewise(y, A, prior, N, generator=g(), progress=False)),
        "diffusion_mbir": ("ct", lambda y, A: sampling.diffusion_mbir(y, A, prior, N, generator=g(), progress=False)),
        "diffusion_mbir_mri": ("mri", lambda y, A: sampling.diffusion_mbir(y, A, prior, N, generator=g(),
                                                                           progress=False)),
        "dmbir_as_released": ("ct", lambda y, A: sampling.diffusion_mbir(
            y, A, prior, N, corrector_sigma="current", boundary="periodic", generator=g(), progress=False)),
        "dmbir_reset": ("ct", lambda y, A: sampling.diffusion_mbir(y, A, prior, N, reset_admm=True, n_cg=5,
                                                                   generator=g(), progress=False)),
        "dmbir_xyz": ("ct", lambda y, A: sampling.diffusion_mbir(y, A, prior, N, axes="xyz", generator=g(),
                                                                 progress=False)),
        "dmbir_admm2": ("ct", lambda y, A: sampling.diffusion_mbir(y, A, prior, N, n_admm=2, n_cg=3, generator=g(),
                                                                   progress=False)),
        "dmbir_iscs": ("ct", lambda y, A: sampling.diffusion_mbir(y, A, prior, N, iscs=2, generator=g(),
                                                                  progress=False)),
        "dps": ("ct", lambda y, A: sampling.dps(y, A, prior, N, generator=g(), progress=False)),
        "dds": ("ct", lambda y, A: sampling.dds(y, A, prior, N, generator=g(), progress=False)),
        "dds_mri": ("mri", lambda y, A: sampling.dds(y, A, prior, N, generator=g(), progress=False)),
        "dds_final_periodic": ("ct", lambda y, A: sampling.dds(y, A, prior, N, final_correction=True,
                                                               boundary="periodic", generator=g(), progress=False)),
        "dds_2d": ("ct", lambda y, A: sampling.dds(y, A, prior, N, axes=None, generator=g(), progress=False)),
        "dds_iscs": ("ct", lambda y, A: sampling.dds(y, A, prior, N, axes=None, iscs=2, generator=g(),
                                                     progress=False)),
        "dds_tv_iscs": ("ct", lambda y, A: sampling.dds(y, A, prior, N, iscs=2, generator=g(), progress=False)),
        "slab": ("ct", lambda y, A: sampling.dds(y, A, dm.load_prior("slab64"), N, axes=None, generator=g(),
                                                 progress=False)),
        "tpdm": ("ct_cube", lambda y, A: sampling.dds(y, A, prior, N, axes=None, prior_perp=dm.load_prior("coronal64"),
                                                      plane="coronal", perp_every=2, generator=g(), progress=False)),
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    rows = {}
    for name, (problem, call) in old.items():
        out = call() if problem is None else call(*P[problem])
        rows[name] = dict(problem=problem, **digest(out))
        print(f"{name:<20} mean {rows[name]['mean']:.6f}  std {rows[name]['std']:.6f}", flush=True)
    path = ROOT / "tests" / "data" / "sampler_rows.json"
    path.write_text(json.dumps(dict(commit=commit.strip(), n_steps=N, torch=torch.__version__,
                                    threads=torch.get_num_threads(), rows=rows), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
