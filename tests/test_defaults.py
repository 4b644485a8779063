"""Defaults that work on every task: each method called with no arguments but the generator
beats the FBP / zero-filled baseline on a validation volume, for every task of the book.

The package's earlier defaults (lam = 0.04, rho = 10 in absolute units, tuned for 8-view CT) fail
this on MRI: DiffusionMBIR diverged there (-16.8 dB on the brain at uniform 1D x4). Since lam
and rho now scale with ||A^T A|| (``operators.scaled_defaults``), one default serves CT with 2 to
180 views and MRI alike. Two central slices of a validation phantom keep this under a minute;
the full comparison of defaults against a grid around them is
``python -m dmbir_edu.experiments defaults`` (book appendix "Validation").
"""
import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import data, experiments

TASKS = [(task, setting) for task, settings in experiments.JOBS.items() for setting in settings]
DEPTH = 2


@pytest.fixture(scope="module")
def prior():
    return dm.load_prior()


def validation_volume():
    x = data.phantom(data.VALIDATION_SEEDS[0], 64)
    return x[32 - DEPTH // 2:][:DEPTH]


@pytest.mark.parametrize("task, setting", TASKS)
def test_every_method_with_bare_defaults_beats_the_baseline(task, setting, prior):
    A = experiments.operator(task, setting)
    x = validation_volume()
    y = A(x)
    baseline = dm.metrics.psnr(A.fbp(y) if hasattr(A, "fbp") else A.adjoint(y), x)
    for method in ("admm_tv", "slicewise", "diffusionmbir", "dds"):
        x_hat = dm.reconstruct(y, A, method, prior=prior, generator=torch.Generator().manual_seed(0), progress=False)
        assert torch.isfinite(x_hat).all(), method
        assert dm.metrics.psnr(x_hat, x) > baseline, \
            f"{method} with its defaults is below the baseline on {task} {setting}"


def test_defaults_follow_the_operator_scale():
    """lam and rho are relative to ||A^T A||: scaling the operator by c scales them by c^2, so a
    reconstruction from c A and c y is the same reconstruction."""
    A = experiments.operator("sparse_view", 8)
    lam, rho = dm.operators.scaled_defaults(A, None, None, dm.operators.Preset(lam_rel=1.0, rho_rel=2.0))
    assert lam == pytest.approx(A.normal_norm()) and rho == pytest.approx(2 * A.normal_norm())
    assert A.normal_norm() == pytest.approx(495.3, rel=1e-3)       # 8 views at 64 x 64

    class Scaled(dm.operators.LinearOperator):
        image_size, measurement_shape = A.image_size, A.measurement_shape

        def __call__(self, x):
            return 3.0 * A(x)

        def adjoint(self, y):
            return 3.0 * A.adjoint(y)

    x = validation_volume()
    B = Scaled()
    assert B.normal_norm() == pytest.approx(9 * A.normal_norm(), rel=1e-6)
    a = dm.reconstruct(A(x), A, "admm_tv", n_iter=5)
    b = dm.reconstruct(B(x), B, "admm_tv", n_iter=5)
    # The two runs are the same problem and differ by round-off only, which CG's iterates amplify
    # (measured 2.5e-3 in float32); the same run on B with lam and rho NOT rescaled differs by 0.14.
    assert (a - b).abs().max().item() < 1e-2
    lam, rho = dm.operators.scaled_defaults(A, None, None, dm.mbir.ADMM_TV)
    assert (a - dm.reconstruct(B(x), B, "admm_tv", n_iter=5, lam=lam, rho=rho)).abs().max().item() > 1e-1
