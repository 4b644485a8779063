"""Every operator and every method on every available device: the output lives on the input's
device, in its dtype, and a seed gives the same reconstruction as on the CPU.

The noise of the samplers is drawn from the seeded CPU generator and moved to the volume's
device (``operators.randn_like``), so CPU and GPU runs see the same numbers; what may differ is
the device's arithmetic (other summation orders, TF32 convolutions on recent NVIDIA GPUs), hence
the tolerances below. On a machine without CUDA the CUDA cases are skipped, with that reason.
"""
import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import data

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
SIZE, DEPTH, STEPS = 64, 2, 3          # the shipped prior is 64 x 64; 2 slices and 3 steps keep it quick
# Largest absolute difference allowed between a CUDA and a CPU run, on images in [0, 1]: the
# classical methods only reorder sums (float32 round-off, amplified by at most 30 x 20 CG steps);
# the samplers also go through the network, whose convolutions may run in TF32 (10-bit mantissa).
TOL = {"classical": 1e-3, "diffusion": 2e-2}


def operator(modality, device):
    if modality == "ct":
        return dm.ParallelBeamCT(SIZE, dm.sparse_view_angles(8), device=device)
    return dm.CartesianMRI(dm.uniform1d_mask(SIZE, 4.0, 0.08, seed=0), device=device)


def volume(device):
    return data.phantom(data.VALIDATION_SEEDS[0], SIZE)[SIZE // 2 - DEPTH // 2:][:DEPTH].to(device)


@pytest.fixture(scope="module")
def priors():
    return {}


def prior_on(priors, device):
    if device not in priors:
        priors[device] = dm.load_prior(device=device)
    return priors[device]


def run(method, modality, device, priors):
    A, x = operator(modality, device), volume(device)
    y = A(x)
    kw = dict(n_steps=STEPS) if method in ("slicewise", "diffusionmbir", "dds") else {}
    prior = prior_on(priors, device) if kw else None
    return dm.reconstruct(y, A, method, prior=prior, generator=torch.Generator().manual_seed(0), progress=False, **kw)


CASES = [(m, "ct") for m in dm.METHODS] + [(m, "mri") for m in dm.METHODS if m != "fbp"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method, modality", CASES)
def test_method_runs_on_device_and_matches_cpu(method, modality, device, priors):
    x_hat = run(method, modality, device, priors)
    assert x_hat.device.type == device and x_hat.dtype == torch.float32 and x_hat.shape == (DEPTH, SIZE, SIZE)
    assert torch.isfinite(x_hat).all()
    reference = run(method, modality, "cpu", priors)                 # same seed, on the CPU
    tol = TOL["diffusion" if method in ("slicewise", "diffusionmbir", "dds") else "classical"]
    if device == "cpu":
        tol = 0.0                                                       # the CPU repeats itself exactly
    assert (x_hat.cpu() - reference).abs().max().item() <= tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_operator_on_device_is_adjoint_in_its_dtype(modality, device):
    A = operator(modality, device)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(DEPTH, SIZE, SIZE, generator=g, dtype=torch.float64).to(device)
    y = A(torch.rand(DEPTH, SIZE, SIZE, generator=g, dtype=torch.float64).to(device))
    Ax, ATy = A(x), A.adjoint(y)
    assert Ax.device.type == device and ATy.device.type == device and ATy.dtype == torch.float64
    lhs, rhs = (Ax * y.conj()).real.sum().item(), (x * ATy).sum().item()
    assert abs(lhs - rhs) <= 1e-9 * abs(lhs)
    assert A(x.float()).dtype in (torch.float32, torch.complex64)


@pytest.mark.parametrize("device", DEVICES)
def test_unconditional_sampling_allocates_on_the_priors_device(device, priors):
    prior = prior_on(priors, device)
    x = dm.sampling.sample(prior, 2, n_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
    assert x.device.type == device and x.shape == (2, SIZE, SIZE)
