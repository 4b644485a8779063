"""Diffusion samplers for 3D inverse problems with a 2D prior: one function per algorithm box.

* ``sample``: unconditional predictor-corrector (PC) sampling of 2D slices (Song et al. 2021,
  Algorithm 2, VE form).
* ``slicewise``: PC sampling with per-slice data consistency, every axial slice on its own
  (score-CT / POCS style): the baseline without z coupling.
* ``diffusion_mbir``: DiffusionMBIR (Chung, Ryu, McCann, Klasky, Ye, CVPR 2023, Algorithm 1):
  PC sampling on every axial slice, then ONE ADMM-TV-z iteration on the whole volume, with
  the split variables (v, u) carried across all steps (2 NFE per slice per step).
* ``dds``: decomposed diffusion sampling (Chung, Lee, Ye, ICLR 2024): Tweedie denoising,
  ADMM-TV-z with a few CG steps on the denoised estimate, DDIM-style re-noising (1 NFE per
  slice per step, ~50 steps).
* ``dps``: diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1), per slice.

They are built from the same steps: ``reverse_diffusion_predictor``, ``langevin_corrector``,
``pc_step``, the prior's Tweedie estimate ``prior.denoise``, and from ``mbir``
``admm_tv_step`` and ``data_consistency``. The ablations of the papers and what came after
(ISCS, perpendicular and slab priors) compose the same steps in ``variants``.

Each method's defaults are one ``Preset`` record below its name (``SAMPLE``, ``SLICEWISE``,
``DMBIR``, ``DDS``, ``DPS``), read by the signatures, by ``reconstruct.PRESETS`` and by the
experiments; the reasons for each value are in the book's appendix "Validation".

Volumes are (D, H, W); the prior sees stacks of axial slices only. A prior is anything that
follows ``prior.BasePrior``; an operator anything that follows ``operators.LinearOperator``.

Explained in: chapters "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb), "DiffusionMBIR
for sparse-view CT" (book/05_diffusionmbir.ipynb) and "Making it fast" (book/09_speed.ipynb).
"""
import itertools
import math

import torch
from tqdm.auto import tqdm

from .mbir import ADMMState, admm_tv_step, check_lam_rho, data_consistency, tv_operators
from .operators import Preset, check_measurements, check_positive_int, randn_like, scaled_defaults

SNR, CHUNK = 0.16, 12      # Langevin snr r (the paper's), slices per predictor-corrector call (as released)
SAMPLE = Preset(n_steps=100, snr=SNR, chunk=CHUNK)
SLICEWISE = Preset(n_steps=100, snr=SNR, chunk=CHUNK, n_cg=50)
DMBIR = Preset(n_steps=100, snr=SNR, chunk=CHUNK, n_cg=1, lam_rel=4e-3, rho_rel=0.05)
DDS = Preset(n_steps=50, eta=0.85, n_cg=5, lam_rel=4e-4, rho_rel=0.025)
DPS = Preset(n_steps=200, zeta=1.0)


def reverse_diffusion_predictor(x, sigma, sigma_next, prior, generator=None, xi=None):
    """VE reverse-diffusion predictor (Song et al. 2021, eq. 47): one NFE.

    x_mean = x + (sigma^2 - sigma_next^2) s(x; sigma);  x = x_mean + sqrt(sigma^2 - sigma_next^2) xi.
    At the last step (sigma_next = 0) no noise is added. ``xi``: the noise, if drawn by the caller
    (ISCS); otherwise fresh from ``generator``.
    """
    step = sigma**2 - sigma_next**2
    x_mean = x + step * prior.score(x, sigma)
    if sigma_next == 0:
        return x_mean
    return x_mean + math.sqrt(step) * (randn_like(x, generator) if xi is None else xi)


def langevin_corrector(x, sigma, prior, snr=SNR, generator=None, xi=None):
    """One annealed Langevin step (Song et al. 2021, Algorithm 5): one NFE.

    eps = 2 (r ||xi|| / ||s||)^2, then x = x + eps s(x; sigma) + sqrt(2 eps) xi, with r = ``snr``
    and ``xi`` as in ``reverse_diffusion_predictor``. The norms are per slice, averaged over the
    slices of ``x`` (as released, where x is one chunk of slices): so the step size, and the
    result, depend on how many slices share the call.
    """
    s = prior.score(x, sigma)
    xi = randn_like(x, generator) if xi is None else xi
    s_norm = s.flatten(1).norm(dim=1).mean()
    xi_norm = xi.flatten(1).norm(dim=1).mean()
    eps = 2 * (snr * xi_norm / s_norm) ** 2
    return x + eps * s + (2 * eps).sqrt() * xi


def pc_step(x, sigma, sigma_next, prior, snr=SNR, chunk=CHUNK, generator=None, corrector_sigma="next", xi=None):
    """One predictor-corrector step on every slice, ``chunk`` slices at a time (2 NFE per slice):
    reverse-diffusion predictor sigma -> sigma_next, then a Langevin corrector at sigma_next, the
    level the sample is now at (Song et al. 2021), none after the last step, which lands on 0.

    ``chunk`` is a parameter of the method, not only of memory: the corrector's step size is set
    from norms averaged over a chunk (``langevin_corrector``). ``corrector_sigma="current"``: the
    corrector at the predictor's own sigma, on every step including the last (what the released
    DiffusionMBIR code does; ``variants``). ``xi``: a pair of noise volumes shaped like x for the
    predictor and the corrector (ISCS, ``variants.iscs_noise``); None: fresh noise per chunk.
    """
    if corrector_sigma not in ("next", "current"):
        raise ValueError(f"corrector_sigma must be 'next' or 'current', got {corrector_sigma!r}")
    sigma_c = sigma_next if corrector_sigma == "next" else sigma
    xi_p, xi_c = (xi[0].split(chunk), xi[1].split(chunk)) if xi is not None else (itertools.repeat(None),) * 2
    parts = []
    for xc, xp, xq in zip(x.split(chunk), xi_p, xi_c):
        xc = reverse_diffusion_predictor(xc, sigma, sigma_next, prior, generator, xp)
        if sigma_c > 0:
            xc = langevin_corrector(xc, sigma_c, prior, snr, generator, xq)
        parts.append(xc)
    return torch.cat(parts)


def kaczmarz_correction(x, y, A):
    """The released code's final CT step (SART-like): x + A^T(y - A x) / A^T(A 1), elementwise."""
    weight = A.adjoint(A(torch.ones_like(x))).clamp_min(1e-8)
    return x + A.adjoint(y - A(x)) / weight


def check_problem(y, A, prior, lam=0.0, rho=1.0, **counts):
    """Shapes, finiteness, lam / rho, the counts (``n_steps=...``, ``n_cg=...``: whole numbers >= 1)
    and a prior that fits the operator, once before a sampler's loop. Returns ``y`` as floats
    (``operators.check_measurements``: integer data become the default float dtype)."""
    y = check_measurements(y, A)
    check_lam_rho(lam, rho)
    for name, n in counts.items():
        check_positive_int(n, name)
    if prior.image_size != A.image_size:
        raise ValueError(f"prior {prior.name!r} was trained on {prior.image_size}x{prior.image_size} slices, "
                         f"but the operator works on {A.image_size}x{A.image_size}")
    return y


def sample(prior, n, n_steps=SAMPLE.n_steps, snr=SAMPLE.snr, chunk=SAMPLE.chunk, generator=None, progress=True,
           device=None, corrector_sigma="next"):
    """Unconditional PC sampling of ``n`` slices from the prior (Song et al. 2021, Algorithm 2),
    on ``device`` (default: the prior's); ``corrector_sigma`` as ``pc_step``."""
    n, n_steps = check_positive_int(n, "n"), check_positive_int(n_steps, "n_steps")
    sigmas = prior.sigmas(n_steps)
    x = prior.sigma_max * randn_like(torch.empty(n, prior.image_size, prior.image_size, device=device or prior.device),
                                     generator)
    for i in tqdm(range(n_steps), disable=not progress, desc="sample"):
        x = pc_step(x, sigmas[i], sigmas[i + 1], prior, snr, chunk, generator, corrector_sigma)
    return x


def slicewise(y, A, prior, n_steps=SLICEWISE.n_steps, snr=SLICEWISE.snr, n_cg=SLICEWISE.n_cg, chunk=SLICEWISE.chunk,
              final_correction=None, generator=None, progress=True, callback=None):
    """The slice-wise baseline: PC sampling with data consistency per slice and no z coupling,
    so every axial slice is an independent 2D posterior sample (score-CT / POCS style).

    Each step: ``pc_step`` (2 NFE per slice), then ``n_cg`` CG iterations on A^T A x = A^T y per
    slice (``mbir.data_consistency``), warm-started at the sample. ``final_correction``: the
    released code's Kaczmarz step at the end (default ``A.final_correction``: CT yes, MRI no).
    ``callback(i, x, None)`` after every step. Arguments otherwise as ``diffusion_mbir``.

    Explained in: chapter "Posterior sampling in 2D" (book/04_posterior_2d.ipynb).
    """
    y = check_problem(y, A, prior, n_steps=n_steps, n_cg=n_cg, chunk=chunk)
    ATy = A.adjoint(y)
    sigmas = prior.sigmas(n_steps)
    x = prior.sigma_max * randn_like(ATy, generator)              # x_N ~ N(0, sigma_max^2 I)
    for i in tqdm(range(n_steps), disable=not progress, desc="slice-wise"):
        x = pc_step(x, sigmas[i], sigmas[i + 1], prior, snr, chunk, generator)
        x = data_consistency(x, ATy, A, n_cg)
        if callback is not None:
            callback(i, x, None)
    if A.final_correction if final_correction is None else final_correction:
        x = kaczmarz_correction(x, y, A)
    return x


def diffusion_mbir(y, A, prior, n_steps=DMBIR.n_steps, snr=DMBIR.snr, lam=None, rho=None, n_admm=1, n_cg=DMBIR.n_cg,
                   chunk=DMBIR.chunk, final_correction=None, generator=None, progress=True, callback=None):
    """DiffusionMBIR (Chung et al., CVPR 2023, Algorithm 1): PC sampling with the 2D prior, then
    ADMM-TV along z on the whole volume, with (v, u) carried across all diffusion steps.

    Parameters
    ----------
    y : measurements ``A(x)``, shaped ``(D, *A.measurement_shape)``.
    A : forward operator with an exact adjoint (any ``operators.LinearOperator``).
    prior : a 2D prior on slices of ``A.image_size`` (``load_prior``; ``prior.BasePrior``).
    n_steps : N, diffusion steps on the geometric VE grid (2000 in the paper; 2N - 1 NFE per slice).
    snr : r, the Langevin corrector's signal-to-noise ratio.
    lam, rho : TV weight and ADMM penalty, in units of our exact adjoint. Default (None):
        ``DMBIR.lam_rel`` and ``DMBIR.rho_rel`` times ||A^T A|| (``A.normal_norm()``), so one
        default serves every view count, arc and modality (the paper's lam = 0.04, rho = 10 used
        a back-projector scaled by pi / (2 n_views); chapter 5 converts).
    n_admm, n_cg : ADMM iterations per diffusion step and CG iterations per x-update.
    chunk : slices per predictor-corrector call; memory is bounded by the chunk, not by D, and
        the corrector's step size depends on it (``pc_step``).
    final_correction : the released code's Kaczmarz step at the end; default ``A.final_correction``.
    generator : torch.Generator for all the noise (any device; ``operators.randn_like``).
    callback : called as ``callback(i, x, state)`` after every step.

    Returns the (D, H, W) volume (not clipped, as released), on ``y``'s device.

    Explained in: chapter "DiffusionMBIR for sparse-view CT" (book/05_diffusionmbir.ipynb).
    """
    lam, rho = scaled_defaults(A, lam, rho, DMBIR)
    y = check_problem(y, A, prior, lam, rho, n_steps=n_steps, n_admm=n_admm, n_cg=n_cg, chunk=chunk)
    ATy = A.adjoint(y)
    sigmas = prior.sigmas(n_steps)
    x = prior.sigma_max * randn_like(ATy, generator)              # x_N ~ N(0, sigma_max^2 I)
    Dz = tv_operators("z")
    state = ADMMState.zeros(x, len(Dz))                          # (v, u), kept across all steps
    for i in tqdm(range(n_steps), disable=not progress, desc="DiffusionMBIR"):
        x = pc_step(x, sigmas[i], sigmas[i + 1], prior, snr, chunk, generator)   # 2D prior, slice by slice
        for _ in range(n_admm):                                                 # whole volume: TV along z
            x, state = admm_tv_step(x, state, y, A, Dz, lam, rho, n_cg, ATy)
        if callback is not None:
            callback(i, x, state)
    if A.final_correction if final_correction is None else final_correction:
        x = kaczmarz_correction(x, y, A)
    return x


def dds(y, A, prior, n_steps=DDS.n_steps, eta=DDS.eta, lam=None, rho=None, n_admm=1, n_cg=DDS.n_cg, generator=None,
        progress=True, callback=None):
    """DDS, decomposed diffusion sampling (Chung, Lee, Ye, ICLR 2024), VE form, one NFE per step.

    For sigma_i on a geometric grid of ``n_steps`` levels:

    1. x0_hat = D(x; sigma_i), the Tweedie (MMSE) estimate from the prior;
    2. x0_hat <- ``n_admm`` ADMM-TV-z iterations with ``n_cg`` CG steps, warm-started at x0_hat,
       (v, u) carried across steps;
    3. re-noise: x = x0_hat + sigma_{i+1} (eta xi + sqrt(1 - eta^2) eps_hat), with
       eps_hat = (x - D(x; sigma_i)) / sigma_i the network's noise estimate (DDIM-style:
       eta = 0 is deterministic, eta = 1 fresh noise only).

    lam, rho default to ``DDS.lam_rel`` and ``DDS.rho_rel`` times ||A^T A|| (as
    ``diffusion_mbir``). Returns the last x0_hat. With eta = 1 the re-noise is fresh noise of
    variance sigma_{i+1}^2 on top of x0_hat: not the DDPM posterior's smaller variance, so the
    output is not an exact posterior sample.

    Explained in: chapter "Making it fast" (book/09_speed.ipynb).
    """
    lam, rho = scaled_defaults(A, lam, rho, DDS)
    y = check_problem(y, A, prior, lam, rho, n_steps=n_steps, n_admm=n_admm, n_cg=n_cg)
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    ATy = A.adjoint(y)
    sigmas = prior.sigmas(n_steps)
    x = prior.sigma_max * randn_like(ATy, generator)
    Dz = tv_operators("z")
    state = ADMMState.zeros(x, len(Dz))
    for i in tqdm(range(n_steps), disable=not progress, desc="DDS"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = prior.denoise(x, sigma)                                       # 1. Tweedie: 1 NFE per slice
        eps_hat = (x - x0_hat) / sigma
        for _ in range(n_admm):                                                # 2. ADMM-TV-z on the clean estimate
            x0_hat, state = admm_tv_step(x0_hat, state, y, A, Dz, lam, rho, n_cg, ATy)
        x = x0_hat + sigma_next * (eta * randn_like(x, generator) + math.sqrt(1 - eta**2) * eps_hat)   # 3. re-noise
        if callback is not None:
            callback(i, x0_hat, state)
    return x0_hat


def dps(y, A, prior, n_steps=DPS.n_steps, zeta=DPS.zeta, generator=None, progress=True, callback=None):
    """Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1), VE form.

    Each step: x0_hat = D(x; sigma_i) with gradients, the reverse-diffusion predictor with the
    score (x0_hat - x) / sigma_i^2, then a gradient step on each slice's measurement residual
    through the denoiser: x_k <- x_k - zeta grad_{x_k} ||y_k - A x0_hat_k|| for every axial slice
    k (one norm per slice, so a slice's step does not depend on how many slices share the call,
    and the slices stay independent: no z coupling). One NFE plus one backward pass per step.

    Explained in: chapter "Posterior sampling in 2D" (book/04_posterior_2d.ipynb).
    """
    y = check_problem(y, A, prior, n_steps=n_steps)
    sigmas = prior.sigmas(n_steps)
    x = prior.sigma_max * randn_like(A.adjoint(y), generator)
    for i in tqdm(range(n_steps), disable=not progress, desc="DPS"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0_hat = prior.denoise(x, sigma)
            residuals = (A(x0_hat) - y).abs().pow(2).flatten(-2).sum(-1).sqrt()   # one per slice
            (grad,) = torch.autograd.grad(residuals.sum(), x)                 # slice k's grad is its own
        step = sigma**2 - sigma_next**2                                # reverse-diffusion predictor
        x = x + step * (x0_hat - x) / sigma**2
        if sigma_next > 0:
            x = x + math.sqrt(step) * randn_like(x, generator)
        x = (x - zeta * grad).detach()                                 # measurement guidance
        if callback is not None:
            callback(i, x0_hat.detach(), None)
    return x0_hat.detach()


# The 3D samplers by method name (``reconstruct`` dispatches on it) and their presets.
SAMPLERS = {"slicewise": slicewise, "diffusionmbir": diffusion_mbir, "dds": dds}
PRESETS = {"slicewise": SLICEWISE, "diffusionmbir": DMBIR, "dds": DDS}
