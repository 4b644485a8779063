"""The samplers reproduce the rows saved before the redesign of ``sampling`` (issue "One sampler
per paper box"): every sampler and variant, on small seeded runs, against
tests/data/sampler_rows.json (written by scripts/sampler_reference_rows.py with the API at the
commit named in the file; the calls it made are written beside each row here).

Tolerance: the same operations in the same order give the same float32 numbers on one machine;
another CPU or thread count may reorder sums, so we allow 1e-4 relative to the volume's spread
(std) on every voxel sampled and on the mean and std themselves. The slice-wise sampler takes 50
CG iterations per step, which amplify such last-bit differences: on a 2-core AMD EPYC (AVX2,
2026-12-06), another machine than the one that wrote the rows, its sampled voxels differed by up to
6.8e-4 of the spread, while its mean and std agreed to 3e-6, so its voxels get 2e-3 (``TOL_CG``)."""
import json
import pathlib

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import data, sampling, variants

ROWS = json.loads((pathlib.Path(__file__).parent / "data" / "sampler_rows.json").read_text())
N = ROWS["n_steps"]
TOL = 1e-4
TOL_CG = {"slicewise": 2e-3}     # rows whose sampler runs 50 CG iterations per step: voxels only


@pytest.fixture(scope="module")
def problems():
    x = data.phantom(data.VALIDATION_SEEDS[0], 64)
    ct = dm.ParallelBeamCT(64, dm.sparse_view_angles(8))
    mri = dm.CartesianMRI(dm.uniform1d_mask(64, 4, center_fraction=0.08, seed=0))
    return {"ct": (ct(x[30:33]), ct), "mri": (mri(x[30:33]), mri), "ct_cube": (ct(x), ct)}


def g():
    return torch.Generator().manual_seed(0)


def calls(prior):
    """name -> call through today's API (the old call in the comment)."""
    dmv, ddv = variants.diffusion_mbir_variant, variants.dds_variant
    kw = lambda: dict(generator=g(), progress=False)
    return {
        "sample": lambda: sampling.sample(prior, 2, N, **kw()),
        "sample_current": lambda: sampling.sample(prior, 2, N, corrector_sigma="current", **kw()),
        "slicewise": lambda y, A: sampling.slicewise(y, A, prior, N, **kw()),
        "diffusion_mbir": lambda y, A: sampling.diffusion_mbir(y, A, prior, N, **kw()),
        "diffusion_mbir_mri": lambda y, A: sampling.diffusion_mbir(y, A, prior, N, **kw()),
        # diffusion_mbir(corrector_sigma="current", boundary="periodic")
        "dmbir_as_released": lambda y, A: dmv(y, A, prior, N, corrector_sigma="current", boundary="periodic", **kw()),
        "dmbir_reset": lambda y, A: dmv(y, A, prior, N, n_cg=5, reset_admm=True, **kw()),    # reset_admm=True, n_cg=5
        "dmbir_xyz": lambda y, A: dmv(y, A, prior, N, axes="xyz", **kw()),
        "dmbir_admm2": lambda y, A: sampling.diffusion_mbir(y, A, prior, N, n_admm=2, n_cg=3, **kw()),
        "dmbir_iscs": lambda y, A: dmv(y, A, prior, N, iscs=2, **kw()),
        "dps": lambda y, A: sampling.dps(y, A, prior, N, **kw()),
        "dds": lambda y, A: sampling.dds(y, A, prior, N, **kw()),
        "dds_mri": lambda y, A: sampling.dds(y, A, prior, N, **kw()),
        "dds_final_periodic": lambda y, A: ddv(y, A, prior, N, final_correction=True, boundary="periodic", **kw()),
        "dds_2d": lambda y, A: ddv(y, A, prior, N, axes=None, **kw()),
        "dds_iscs": lambda y, A: ddv(y, A, prior, N, axes=None, iscs=2, **kw()),
        "dds_tv_iscs": lambda y, A: ddv(y, A, prior, N, iscs=2, **kw()),
        "slab": lambda y, A: ddv(y, A, dm.load_prior("slab64"), N, axes=None, **kw()),
        "tpdm": lambda y, A: ddv(y, A, prior, N, axes=None, prior_perp=dm.load_prior("coronal64"), plane="coronal",
                                 perp_every=2, **kw()),
    }


@pytest.fixture(scope="module")
def prior():
    return dm.load_prior("phantom64")


@pytest.mark.parametrize("name", list(ROWS["rows"]))
def test_sampler_reproduces_the_row_saved_before_the_redesign(name, prior, problems):
    row = ROWS["rows"][name]
    call = calls(prior)[name]
    out = (call() if row["problem"] is None else call(*problems[row["problem"]])).detach().double().flatten()
    idx = torch.linspace(0, out.numel() - 1, 32).long()
    scale = TOL * max(1.0, row["std"])
    assert abs(out.mean().item() - row["mean"]) <= scale
    assert abs(out.std().item() - row["std"]) <= scale
    voxel_scale = TOL_CG.get(name, TOL) * max(1.0, row["std"])
    assert torch.allclose(out[idx], torch.tensor(row["voxels"], dtype=torch.float64), rtol=0, atol=voxel_scale)
    assert set(calls(prior)) == set(ROWS["rows"])                  # every saved row has a call today


def test_variants_with_their_defaults_are_the_core_samplers(prior, problems):
    """The variant samplers with no option set are the paper's boxes, to the bit."""
    y, A = problems["ct"]
    kw = lambda: dict(generator=g(), progress=False)
    assert torch.equal(variants.diffusion_mbir_variant(y, A, prior, 3, **kw()),
                       sampling.diffusion_mbir(y, A, prior, 3, **kw()))
    assert torch.equal(variants.dds_variant(y, A, prior, 3, **kw()), sampling.dds(y, A, prior, 3, **kw()))
    assert torch.equal(variants.diffusion_mbir_variant(y, A, prior, 3, n_cg=50, axes=None, **kw()),
                       sampling.slicewise(y, A, prior, 3, **kw()))
