"""Bad inputs give a clear error that names the argument and what is allowed, or a correct result
(integer data are converted to float); the command-line tools answer a bad option with one line
of argparse and exit status 2, never a traceback. All at 16 x 16, a few steps."""
import re
import subprocess
import sys

import pytest
import torch

import dmbir_edu as dm
from dmbir_edu.ct import gaussian_noise, poisson_noise
from dmbir_edu.mri import complex_gaussian_noise
from dmbir_edu.prior import DEFAULT_UNET, GaussianPrior, Prior
from dmbir_edu.sampling import dds, diffusion_mbir, sample, slicewise

N = 16


@pytest.fixture(scope="module")
def ct():
    """8-view CT at 16 x 16, a random 2-slice volume and its sinogram."""
    A = dm.ParallelBeamCT(N, dm.sparse_view_angles(8))
    x = torch.rand(2, N, N, generator=torch.Generator().manual_seed(0))
    return A, x, A(x)


@pytest.fixture(scope="module")
def net():
    """An untrained network prior on 16 x 16 slices (the checks run before the network)."""
    torch.manual_seed(0)
    return Prior(dict(DEFAULT_UNET, sample_size=N)).eval().requires_grad_(False)


@pytest.mark.parametrize("method", ["fbp", "adjoint", "cg"])
def test_integer_measurements_are_converted_to_float(ct, method):
    A, _, y = ct
    counts = (100 * y).round().long()
    x_hat = dm.reconstruct(counts, A, method)
    assert x_hat.dtype == torch.get_default_dtype()
    assert x_hat.abs().amax() > 0
    torch.testing.assert_close(x_hat, dm.reconstruct(counts.float(), A, method))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16])
def test_ct_operator_takes_integer_and_half_precision_input(ct, dtype):
    """Integer input is computed and returned in float32; half precision is computed in float32 and
    returned in its own dtype (equal to the float32 result rounded once)."""
    A, x, y = ct
    x_in, y_in = (x * 10).to(dtype), (y * 10).to(dtype)
    out_dtype = torch.float32 if dtype == torch.int64 else dtype
    for f, t in ((A, x_in), (A.adjoint, y_in), (A.fbp, y_in)):
        out = f(t)
        assert out.dtype == out_dtype
        assert out.abs().amax() > 0
        torch.testing.assert_close(out, f(t.float()).to(out_dtype), rtol=0, atol=0)


def samplers(prior):
    """Every sampler entry point on (y, A, **kw), with as few steps as they allow."""
    return {
        "reconstruct admm_tv": lambda y, A, **kw: dm.reconstruct(y, A, "admm_tv", **kw),
        "reconstruct admm_tv_z": lambda y, A, **kw: dm.reconstruct(y, A, "admm_tv_z", **kw),
        "admm_tv": lambda y, A, **kw: dm.admm_tv(y, A, **kw),
        "diffusion_mbir": lambda y, A, **kw: diffusion_mbir(y, A, prior, n_steps=2, progress=False, **kw),
        "dds": lambda y, A, **kw: dds(y, A, prior, n_steps=2, progress=False, **kw),
        "reconstruct dds": lambda y, A, **kw: dm.reconstruct(y, A, "dds", prior=prior, n_steps=2, progress=False, **kw),
    }


@pytest.mark.parametrize("entry", list(samplers(None)))
@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -1.0])
def test_lam_must_be_a_finite_number_at_least_zero(ct, entry, lam):
    A, _, y = ct
    with pytest.raises(ValueError, match="lam must be a finite number >= 0, got"):
        samplers(GaussianPrior(N))[entry](y, A, lam=lam)


@pytest.mark.parametrize("call, name", [
    (lambda y, A: dm.admm_tv(y, A, n_iter=-5), "n_iter"),
    (lambda y, A: dm.admm_tv(y, A, n_iter=0), "n_iter"),
    (lambda y, A: dm.admm_tv(y, A, n_cg=2.5), "n_cg"),
    (lambda y, A: dm.reconstruct(y, A, "cg", n_iter=-1), "n_iter"),
    (lambda y, A: dm.reconstruct(y, A, "admm_tv_z", n_iter=0), "n_iter"),
    (lambda y, A: dds(y, A, GaussianPrior(N), n_steps=0, progress=False), "n_steps"),
    (lambda y, A: dds(y, A, GaussianPrior(N), n_steps=2, n_cg=0, progress=False), "n_cg"),
    (lambda y, A: diffusion_mbir(y, A, GaussianPrior(N), n_steps=2, n_admm=-1, progress=False), "n_admm"),
    (lambda y, A: slicewise(y, A, GaussianPrior(N), n_steps=2, chunk=0, progress=False), "chunk"),
    (lambda y, A: sample(GaussianPrior(N), 1, n_steps=0, progress=False), "n_steps"),
], ids=["admm_n_iter_-5", "admm_n_iter_0", "admm_n_cg_2.5", "cg_n_iter_-1", "admm_tv_z_n_iter_0", "dds_n_steps_0",
        "dds_n_cg_0", "dmbir_n_admm_-1", "slicewise_chunk_0", "sample_n_steps_0"])
def test_iteration_counts_must_be_whole_numbers_at_least_one(ct, call, name):
    """0 is refused too, by every entry point: 0 iterations would return the starting point (zeros)."""
    A, _, y = ct
    with pytest.raises(ValueError, match=f"{name} must be a whole number >= 1, got"):
        call(y, A)


def test_an_all_false_mri_mask_is_refused_at_construction():
    with pytest.raises(ValueError, match="mask samples no k-space point"):
        dm.CartesianMRI(torch.zeros(N, N, dtype=torch.bool))


@pytest.mark.parametrize("call", [
    lambda: dm.sparse_view_angles(2.5),
    lambda: dm.sparse_view_angles(0),
    lambda: dm.sparse_view_angles(True),
    lambda: dm.limited_angle_angles(90, n_views=-3),
])
def test_view_counts_must_be_whole_numbers(call):
    with pytest.raises(ValueError, match="n_views must be a whole number >= 1, got"):
        call()


@pytest.mark.parametrize("sigma", [0, -0.1, float("nan"), float("inf"), torch.tensor([1.0, 0.0])])
@pytest.mark.parametrize("which", ["network", "gaussian"])
@pytest.mark.parametrize("fn", ["denoise", "score"])
def test_denoise_needs_a_finite_sigma_above_zero(net, sigma, which, fn):
    prior = net if which == "network" else GaussianPrior(N)
    with pytest.raises(ValueError, match=r"sigma \(the noise level\) must be"):
        getattr(prior, fn)(torch.rand(2, N, N), sigma)


@pytest.mark.parametrize("image_size, match", [
    (-8, "image_size must be a whole number >= 1, got -8"),
    (0, "image_size must be a whole number >= 1, got 0"),
    (8.0, "image_size must be a whole number >= 1, got 8.0"),
    (12, "image_size must be a multiple of 8"),
])
def test_load_prior_checks_image_size(image_size, match):
    with pytest.raises(ValueError, match=match):
        dm.load_prior(image_size=image_size)


@pytest.mark.parametrize("args, match", [
    ((0, dm.sparse_view_angles(8)), "image_size must be a whole number >= 1, got 0"),
    ((-16, dm.sparse_view_angles(8)), "image_size must be a whole number >= 1"),
    ((N, []), "angles must hold at least one projection angle"),
    ((N, [0.0, float("nan")]), "angles contains NaN or inf"),
    ((N, dm.sparse_view_angles(4), 0), "oversample must be a whole number >= 1"),
])
def test_ct_operator_checks_its_geometry(args, match):
    with pytest.raises(ValueError, match=match):
        dm.ParallelBeamCT(*args)


@pytest.mark.parametrize("method", ["fbp", "adjoint", "cg", "admm_tv", "dds"])
def test_empty_measurements_are_refused(ct, method):
    A, _, y = ct
    with pytest.raises(ValueError, match=r"y is empty \(shape \(0, 8, 23\)\)"):
        dm.reconstruct(y[:0], A, method, prior=GaussianPrior(N), progress=False)


def test_denoise_of_an_empty_batch_is_an_empty_batch(net):
    """Documented choice: B = 0 slices in, B = 0 slices out (no network call)."""
    out = net.denoise(torch.zeros(0, N, N, dtype=torch.float64), 1.0)
    assert out.shape == (0, N, N) and out.dtype == torch.float64


@pytest.mark.parametrize("call", [
    lambda y, A: dm.reconstruct(y, A, "dds", prior=GaussianPrior(N), n_steps=2, progress=False, generator=42),
    lambda y, A: diffusion_mbir(y, A, GaussianPrior(N), n_steps=2, progress=False, generator=42),
    lambda y, A: sample(GaussianPrior(N), 1, n_steps=2, progress=False, generator=42),
    lambda y, A: poisson_noise(y, generator=42),
    lambda y, A: gaussian_noise(y, 0.1, generator=42),
    lambda y, A: complex_gaussian_noise(torch.ones(N, N, dtype=torch.complex64), 30.0, generator=42),
], ids=["reconstruct_dds", "diffusion_mbir", "sample", "poisson_noise", "gaussian_noise", "complex_gaussian_noise"])
def test_generator_must_be_a_torch_generator(ct, call):
    """Documented choice: a bare seed is refused (the message says how to make a generator from it)."""
    A, _, y = ct
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator .*manual_seed.*got int 42"):
        call(y, A)


@pytest.mark.parametrize("axes", ["q", "", None, 3])
@pytest.mark.parametrize("method", ["admm_tv", "admm_tv_z"])
def test_admm_tv_axes_are_checked_and_can_be_overridden(ct, method, axes):
    """``axes`` passed to ``reconstruct`` overrides the method's own (it used to be a duplicate
    keyword, a TypeError); a bad one names the allowed letters."""
    A, _, y = ct
    with pytest.raises(ValueError, match="axes must be a string of 'z', 'y', 'x'"):
        dm.reconstruct(y, A, method, axes=axes, n_iter=1)


def test_reconstruct_passes_axes_on_to_admm_tv(ct):
    A, _, y = ct
    kw = dict(lam=0.1, rho=1.0, n_iter=2, n_cg=2)
    torch.testing.assert_close(dm.reconstruct(y, A, "admm_tv", axes="yx", **kw), dm.admm_tv(y, A, axes="yx", **kw))
    assert not torch.allclose(dm.reconstruct(y, A, "admm_tv", axes="yx", **kw), dm.reconstruct(y, A, "admm_tv", **kw))


CLI_CASES = [
    ("experiments", ["sparse_view", "--views", "0"], "argument --views: must be a whole number >= 1, got '0'"),
    ("experiments", ["sparse_view", "--device", "gpu"], "argument --device: unknown device 'gpu'"),
    ("experiments", ["sparse_view", "--size", "0"], "argument --size: must be a whole number >= 1, got '0'"),
    ("experiments", ["sparse_view", "--steps", "-3"], "argument --steps: must be a whole number >= 1"),
    ("experiments", ["limited_angle", "--arc", "0"], r"argument --arc: an arc must be in \(0, 180\]"),
    ("experiments", ["mri", "--accel", "uniform1d-x0"], "argument --accel: acceleration must be a finite number >= 1"),
    ("experiments", ["mri", "--accel", "foo"], "argument --accel: unknown MRI setting 'foo'"),
    ("experiments", ["sparse_view", "--methods", "magic"], "argument --methods: unknown row 'magic'"),
    ("experiments", ["sparse_view", "--noise", "loud"], "argument --noise: a level is 'none', 'realistic'"),
    ("experiments", ["sparse_view", "--prior", "nope"], "argument --prior: invalid choice: 'nope'"),
    ("bench", ["--size", "0"], "argument --size: must be a whole number >= 1"),
    ("bench", ["--views", "-2"], "argument --views: must be a whole number >= 1"),
    ("bench", ["--device", "gpu"], "argument --device: unknown device 'gpu'"),
    ("train", ["--run", "unused", "--steps", "0"], "argument --steps: must be a whole number >= 1"),
    ("train", ["--run", "unused", "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1"),
    ("train", ["--run", "unused", "--slab", "2"], "argument --slab: invalid choice: 2"),
    ("train", ["--run", "unused", "--eval-every", "-100"], "--eval-every must be 0 or a positive multiple of 100"),
    ("train", ["--run", "unused", "--data", "no/such/folder"], "--data must be phantom, ct, mr or a folder"),
    ("train", ["--run", "unused", "--device", "gpu"], "argument --device: unknown device 'gpu'"),
    ("prior_quality", ["--steps", "0"], "argument --steps: must be a whole number >= 1"),
]
if not torch.cuda.is_available():
    CLI_CASES.append(("bench", ["--device", "cuda"], "argument --device: device 'cuda' is not available"))


@pytest.mark.parametrize("module, args, message", CLI_CASES, ids=[f"{m} {' '.join(a)}" for m, a, _ in CLI_CASES])
def test_cli_bad_argument_is_one_line_and_exit_2(module, args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", f"dmbir_edu.{module}", *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]            # argparse: the usage lines, then one error line
    assert last.startswith(f"python -m dmbir_edu.{module}: error: "), done.stderr
    assert re.search(message, last), last
