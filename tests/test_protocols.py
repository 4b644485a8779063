"""The small explicit protocols of the package: every operator runs the adjoint dot test as a
method, every prior follows ``prior.BasePrior``, and every default lives in one ``Preset``."""
import inspect

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import mbir, sampling, variants
from dmbir_edu.operators import FiniteDifference, LinearOperator, WrappedOperator
from dmbir_edu.prior import BasePrior, GaussianPrior, WrappedPrior
from dmbir_edu.reconstruct import PRESETS


class Counting(WrappedOperator):
    """The book's counting operator: A as it is, with a count of forward applications."""

    def __init__(self, A):
        super().__init__(A)
        self.n_forward = 0

    def __call__(self, x):
        self.n_forward += 1
        return self.A(x)


class Scaled(WrappedOperator):
    """The official code's convention, A^T replaced by c A^T: not an adjoint any more."""

    def adjoint(self, y):
        return 2.0 * self.A.adjoint(y)


OPERATORS = {
    "ct": lambda: dm.ParallelBeamCT(16, dm.sparse_view_angles(5)),
    "limited_angle": lambda: dm.ParallelBeamCT(16, dm.limited_angle_angles(90, 7)),
    "mri": lambda: dm.CartesianMRI(dm.uniform1d_mask(16, 4)),
    "counting": lambda: Counting(dm.ParallelBeamCT(16, dm.sparse_view_angles(5))),
}


@pytest.mark.parametrize("name", OPERATORS)
def test_every_operator_passes_its_own_dot_test(name):
    A = OPERATORS[name]()
    assert isinstance(A, LinearOperator)
    assert A.dot_test() < 1e-10


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("axis", [-3, -2, -1])
def test_finite_differences_pass_the_dot_test(axis, boundary):
    assert FiniteDifference(axis, boundary).dot_test(shape=(5, 6, 7)) < 1e-12


def test_the_dot_test_catches_a_scaled_back_projector():
    """c A^T is not the adjoint of A for c != 1: the test must say so, |1 - c| / c = 0.5 for c = 2."""
    assert Scaled(OPERATORS["ct"]()).dot_test() == pytest.approx(0.5, rel=1e-9)


def test_a_wrapped_operator_is_the_operator_it_wraps():
    A = OPERATORS["ct"]()
    W = Counting(A)
    x = torch.rand(2, 16, 16)
    assert (W.image_size, W.measurement_shape, W.final_correction) == (A.image_size, A.measurement_shape, True)
    assert torch.equal(W(x), A(x)) and W.n_forward == 1
    assert W.normal_norm() == pytest.approx(A.normal_norm(), rel=1e-9)
    assert dm.CartesianMRI(dm.uniform1d_mask(16, 4)).final_correction is False


class CountingPrior(WrappedPrior):
    def __init__(self, prior):
        super().__init__(prior)
        self.nfe = 0

    def denoise(self, x, sigma):
        self.nfe += x.shape[0]
        return self.prior.denoise(x, sigma)


@pytest.mark.parametrize("make", [lambda: dm.load_prior("phantom64"), lambda: GaussianPrior(64),
                                  lambda: CountingPrior(GaussianPrior(64))])
def test_every_prior_follows_the_protocol(make):
    prior = make()
    assert isinstance(prior, BasePrior)
    for attribute in ("name", "image_size", "sigma_min", "sigma_max", "channels", "device"):
        assert getattr(prior, attribute) is not None
    x = torch.rand(2, 64, 64)
    torch.testing.assert_close(prior.score(x, 0.5), (prior.denoise(x, 0.5) - x) / 0.25)
    sigmas = prior.sigmas(4)
    assert len(sigmas) == 5 and sigmas[0] == prior.sigma_max and sigmas[-1] == 0.0
    assert sigmas[-2] == pytest.approx(prior.sigma_min)


def test_a_wrapped_prior_counts_what_a_sampler_calls():
    """DDS makes one network evaluation per slice and step: 3 slices x 4 steps."""
    prior = CountingPrior(GaussianPrior(16))
    A = dm.ParallelBeamCT(16, dm.sparse_view_angles(4))
    sampling.dds(A(torch.rand(3, 16, 16)), A, prior, n_steps=4, progress=False)
    assert prior.nfe == 12


def test_every_default_is_read_from_its_preset():
    """The samplers' and admm_tv's signatures take their defaults from the preset records, and
    ``reconstruct.PRESETS`` holds the same records: no default is written twice."""
    fields = {"n_steps", "n_iter", "n_cg", "snr", "chunk", "eta", "zeta"}
    functions = {sampling.sample: sampling.SAMPLE, sampling.slicewise: sampling.SLICEWISE,
                 sampling.diffusion_mbir: sampling.DMBIR, sampling.dds: sampling.DDS, sampling.dps: sampling.DPS,
                 variants.diffusion_mbir_variant: sampling.DMBIR, variants.dds_variant: sampling.DDS,
                 mbir.admm_tv: mbir.ADMM_TV}
    for fn, preset in functions.items():
        params = inspect.signature(fn).parameters
        for name in fields & set(params):
            assert params[name].default == getattr(preset, name), (fn.__name__, name)
        if "lam" in params:                          # lam and rho: the preset's, scaled to the operator
            assert params["lam"].default is None and params["rho"].default is None
    assert PRESETS["diffusionmbir"] is sampling.DMBIR and PRESETS["dds"] is sampling.DDS
    assert PRESETS["admm_tv"] is mbir.ADMM_TV
