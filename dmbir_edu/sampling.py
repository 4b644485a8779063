"""Diffusion samplers for 3D inverse problems with a 2D prior: slice-wise, DiffusionMBIR, DDS.

All three share one loop shape: move every axial slice one noise level down with the 2D prior
(in chunks of slices), then pull the whole volume towards the measurements with ONE ADMM-TV
iteration (``mbir.admm_tv_step``), whose split variables (z, u) are carried across all steps:

* ``diffusion_mbir`` (Chung et al., CVPR 2023, Algorithm 1 / section 1.7 of our spec): VE
  reverse-diffusion predictor + Langevin corrector, then ADMM-TV along z (2 NFE per step).
* ``slicewise``: the same sampler with no TV term and per-slice CG data consistency, i.e.
  the 2D posterior sampler run on every slice independently (no z coupling).
* ``dds`` (Chung, Lee, Ye, ICLR 2024): Tweedie denoising, ADMM-TV-z with a few CG steps on
  the denoised estimate, DDIM-style re-noising (1 NFE per step, ~50 steps).

Volumes are (D, H, W); the prior sees (chunk, H, W) axial slices only.

Explained in: chapters "From 2D to 3D" and "DiffusionMBIR for sparse-view CT"
(book/05_diffusionmbir.ipynb) and "Making it fast" (book/09_speed.ipynb).
"""
import itertools
import math

import torch
from tqdm.auto import tqdm

from .data import from_plane, to_plane
from .mbir import ADMMState, admm_tv_step, check_lam_rho, tv_operators
from .operators import check_measurements, check_positive_int, generator_device, scaled_defaults
from .prior import ve_sigmas


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


def langevin_corrector(x, sigma, prior, snr=0.16, generator=None, xi=None):
    """One annealed Langevin step (Song et al. 2021, Algorithm 5): one NFE.

    eps = 2 (snr ||xi|| / ||s||)^2 with per-slice norms averaged over the chunk, then
    x = x + eps s(x; sigma) + sqrt(2 eps) xi (``xi`` as in ``reverse_diffusion_predictor``).
    """
    s = prior.score(x, sigma)
    xi = randn_like(x, generator) if xi is None else xi
    s_norm = s.flatten(1).norm(dim=1).mean()
    xi_norm = xi.flatten(1).norm(dim=1).mean()
    eps = 2 * (snr * xi_norm / s_norm) ** 2
    return x + eps * s + (2 * eps).sqrt() * xi


def pc_step(x, sigma, sigma_next, prior, snr=0.16, chunk=12, generator=None, corrector_sigma="next", iscs=None):
    """One predictor-corrector step on every slice, ``chunk`` slices at a time (2 NFE per slice):
    reverse-diffusion predictor sigma -> sigma_next, then a Langevin corrector at sigma_next
    (``corrector_sigma="next"``: the level the sample is now at, Song et al. 2021; no corrector
    after the last step, which lands on sigma = 0) or at the predictor's own sigma (``"current"``:
    what the released DiffusionMBIR code does, on every step including the last).
    ``iscs``: anchor spacing P of ISCS noise (``iscs_noise``, drawn for the whole volume, so the
    correlation runs across chunks); None: independent noise per slice."""
    if corrector_sigma not in ("next", "current"):
        raise ValueError(f"corrector_sigma must be 'next' or 'current', got {corrector_sigma!r}")
    sigma_c = sigma_next if corrector_sigma == "next" else sigma
    xi_p, xi_c = ((iscs_noise(x, iscs, generator).split(chunk), iscs_noise(x, iscs, generator).split(chunk))
                  if iscs else (itertools.repeat(None), itertools.repeat(None)))
    parts = []
    for xc, xp, xq in zip(x.split(chunk), xi_p, xi_c):
        xc = reverse_diffusion_predictor(xc, sigma, sigma_next, prior, generator, xp)
        if sigma_c > 0:                     # "next": none after the last step; "current": every step, as released
            xc = langevin_corrector(xc, sigma_c, prior, snr, generator, xq)
        parts.append(xc)
    return torch.cat(parts)


def sample(prior, n, n_steps=100, snr=0.16, chunk=12, generator=None, progress=True, corrector_sigma="next",
           device=None):
    """Unconditional PC sampling of ``n`` slices from the prior (Song et al. 2021, Algorithm 2),
    on ``device`` (default: the prior's)."""
    n, n_steps = check_positive_int(n, "n"), check_positive_int(n_steps, "n_steps")
    device = device if device is not None else getattr(prior, "device", "cpu")
    sigmas = ve_sigmas(n_steps, prior.sigma_min, prior.sigma_max).tolist() + [0.0]
    x = prior.sigma_max * randn_like(torch.empty(n, prior.image_size, prior.image_size, device=device), generator)
    for i in tqdm(range(n_steps), disable=not progress, desc="sample"):
        x = pc_step(x, sigmas[i], sigmas[i + 1], prior, snr, chunk, generator, corrector_sigma)
    return x


def randn_like(x, generator=None):
    """Standard normal noise shaped like ``x``, in its dtype and on its device.

    The noise is drawn on the generator's device and moved to ``x``'s, so a seeded CPU generator
    gives the same numbers whatever device the volume is on (same seed, same result on CPU and
    GPU, up to the device's arithmetic)."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator_device(x, generator)).to(x.device)


def iscs_noise(x, period, generator=None):
    """ISCS, inter-slice consistent stochasticity (Du et al. 2026): standard normal noise shaped like
    the volume x (D, H, W), correlated along z so that neighbouring slices' sampling paths agree.

    Independent anchor noises xi_j sit every ``period`` = P slices (at a random offset); a slice a
    fraction t of the way from anchor j to anchor j + 1 gets their spherical interpolation

        xi = cos(t pi / 2) xi_j + sin(t pi / 2) xi_{j+1},

    the slerp with the angle Omega = pi / 2 that two independent Gaussian noises make in high
    dimension. The weights' squares sum to 1, so every voxel is exactly N(0, 1); neighbouring
    slices have correlation cos(pi / (2P)) everywhere (0.92 for P = 4); slices P apart in one
    segment are independent. P = 1: independent slices, as ``randn_like``.
    """
    if not (isinstance(period, int) and period >= 1):
        raise ValueError(f"iscs period must be a whole number of slices >= 1, got {period!r}")
    D, P = x.shape[0], period
    offset = int(torch.randint(P, (1,), generator=generator, device=generator_device(x, generator)))
    anchors = randn_like(x.new_empty(-(-(D + offset) // P) + 1, *x.shape[1:]), generator)
    u = (torch.arange(D, device=x.device) + offset) / P        # slice d lies at u between anchors floor(u), +1
    j, t = u.floor().long(), (u - u.floor()).to(x.dtype).reshape(-1, *[1] * (x.dim() - 1))
    return torch.cos(t * math.pi / 2) * anchors[j] + torch.sin(t * math.pi / 2) * anchors[j + 1]


def tweedie(x, sigma, prior, plane="axial", offset=0, stride=None):
    """D(x; sigma) for a volume x (D, H, W) from a 2D prior on its ``plane`` slices (``data.to_plane``:
    axial, or coronal / sagittal for a perpendicular prior).

    A slab prior (``prior.channels`` = k > 1: runs of k adjacent slices, DiffusionBlend-style)
    denoises runs of k slices starting every ``stride`` slices (default k: a partition, one
    network call per slice; 1: every run) from ``offset``, the volume's ends padded by repeating
    its first and last slice; each slice takes the mean of the estimates of the runs that hold it.
    Since the score is (D - x) / sigma^2, that is blending the runs' scores.
    """
    s = to_plane(x, plane)
    k = getattr(prior, "channels", 1)
    if k == 1:
        return from_plane(prior.denoise(s, sigma), plane)
    stride = k if stride is None else stride
    if not (isinstance(stride, int) and 1 <= stride <= k):
        raise ValueError(f"stride must be a whole number of slices from 1 to k = {k}, got {stride!r}")
    D = s.shape[0]
    starts = list(range(offset % stride - (k - 1) // stride * stride - stride, D, stride))
    starts = [r for r in starts if r + k > 0]                      # every run that holds a slice of x
    front, back = max(0, -starts[0]), max(0, starts[-1] + k - D)
    padded = torch.cat([s[:1].expand(front, *s.shape[1:]), s, s[-1:].expand(back, *s.shape[1:])])
    est = prior.denoise(torch.stack([padded[r + front:r + front + k] for r in starts]), sigma)
    total, count = torch.zeros_like(padded), padded.new_zeros(padded.shape[0], *[1] * (s.dim() - 1))
    for r, e in zip(starts, est):
        total[r + front:r + front + k] += e
        count[r + front:r + front + k] += 1
    return from_plane((total / count)[front:front + D], plane)


def noise(x, iscs=None, generator=None):
    """The sampler's fresh noise for the volume x: independent per voxel (``iscs`` None) or ISCS
    noise with anchor spacing ``iscs`` (``iscs_noise``)."""
    return randn_like(x, generator) if iscs is None else iscs_noise(x, iscs, generator)


def kaczmarz_correction(x, y, A):
    """The released code's final CT step (SART-like): x + A^T(y - A x) / A^T(A 1), elementwise."""
    weight = A.adjoint(A(torch.ones_like(x))).clamp_min(1e-8)
    return x + A.adjoint(y - A(x)) / weight


def _check(y, A, prior, lam, rho, **counts):
    """Shapes, finiteness, lam / rho, the counts (``n_steps=...``, ``n_cg=...``: whole numbers >= 1)
    and a prior that fits the operator, once before the loop. Returns ``y`` as floats
    (``operators.check_measurements``: integer data become the default float dtype)."""
    y = check_measurements(y, A)
    check_lam_rho(lam, rho)
    for name, n in counts.items():
        check_positive_int(n, name)
    if prior.image_size != A.image_size:
        raise ValueError(f"prior {prior.name!r} was trained on {prior.image_size}x{prior.image_size} slices, "
                         f"but the operator works on {A.image_size}x{A.image_size}")
    return y


# Each method's default lam and rho, relative to the operator's scale ||A^T A|| (``A.normal_norm()``,
# ``operators.scaled_defaults``), chosen on validation volumes (book appendix "Validation"): rho is
# ||A^T A|| / 20 for DiffusionMBIR and / 40 for DDS; the shrinkage threshold lam / rho (in image
# units) is 0.08 for DiffusionMBIR and 0.016 for DDS.
DMBIR_LAM_REL, DMBIR_RHO_REL = 4e-3, 0.05
DDS_LAM_REL, DDS_RHO_REL = 4e-4, 0.025


def diffusion_mbir(y, A, prior, n_steps=100, snr=0.16, lam=None, rho=None, axes="z", n_admm=1, n_cg=1,
                   reset_admm=False, final_correction=None, chunk=12, boundary="neumann", corrector_sigma="next",
                   iscs=None, generator=None, progress=True, callback=None):
    """DiffusionMBIR (Chung et al., CVPR 2023): PC sampling with the 2D prior + ADMM-TV-z.

    Parameters
    ----------
    y : measurements ``A(x)``, shaped ``(D, *A.measurement_shape)``.
    A : forward operator with an exact adjoint (``ParallelBeamCT``, ``CartesianMRI``, or any
        ``operators.LinearOperator``).
    prior : a ``Prior`` (``load_prior``) on slices of ``A.image_size``.
    n_steps : N, diffusion steps on the geometric VE grid (2000 in the paper, 100 in the book;
        2N - 1 NFE per slice).
    snr : r, Langevin corrector signal-to-noise ratio (0.16 in the paper).
    lam, rho : TV weight and ADMM penalty, in units of our exact adjoint. Default (None):
        ``DMBIR_LAM_REL`` and ``DMBIR_RHO_REL`` times ||A^T A|| (``A.normal_norm()``), so one
        default serves every view count, arc and modality (at 8 views, 64^2: lam = 1.98,
        rho = 24.8; the paper's 0.04 and 10 used a back-projector scaled by pi / (2 n_views);
        book chapter 5 converts).
    axes : TV directions, "z" (the method) or "xyz" (ablation); None or "" for no TV, which
        makes the data-consistency step per slice (the slice-wise baseline).
    n_admm, n_cg : ADMM iterations per diffusion step and CG iterations per x-update (1 and 1).
    reset_admm : if True, (z, u) restart from zero every step (ablation); the method carries them.
    final_correction : the final Kaczmarz step; default ``A.final_correction`` (on for CT, off
        for MRI, as released).
    chunk : slices per predictor/corrector call (12 for CT in the released code); memory is
        bounded by the chunk, not by D.
    corrector_sigma : "next" (default) runs the corrector at sigma_{i+1}, the level the predictor
        moved to; "current" at sigma_i, as the released code does (``pc_step``).
    iscs : None (independent noise per slice, as released) or the anchor spacing P of ISCS noise
        (``iscs_noise``) for x_T and every predictor and corrector step (chapter "Beyond TV along z").
    generator : torch.Generator for all the noise (any device; ``randn_like``); a bare seed is a
        TypeError: pass ``torch.Generator().manual_seed(seed)``.
    callback : called as ``callback(i, x, state)`` after every step.

    Returns
    -------
    (D, H, W) tensor (not clipped, as released), on ``y``'s device.

    Explained in: chapter "DiffusionMBIR for sparse-view CT" (book/05_diffusionmbir.ipynb).
    """
    lam, rho = scaled_defaults(A, lam, rho, DMBIR_LAM_REL, DMBIR_RHO_REL) if axes else (0.0, 1.0)
    y = _check(y, A, prior, lam, rho, n_steps=n_steps, n_admm=n_admm, n_cg=n_cg, chunk=chunk)
    ATy = A.adjoint(y)
    sigmas = ve_sigmas(n_steps, prior.sigma_min, prior.sigma_max).tolist() + [0.0]
    x = prior.sigma_max * noise(ATy, iscs, generator)                # x_T ~ N(0, sigma_max^2 I)
    D = tv_operators(axes, boundary) if axes else ()
    cg_dims = None if D else (-2, -1)             # no TV: CG per slice, slices fully independent
    state = ADMMState.zeros(x, len(D))
    for i in tqdm(range(n_steps), disable=not progress, desc="DiffusionMBIR" if D else "slice-wise"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # 2D prior, slice chunk by slice chunk: predictor then corrector (2 NFE per slice)
        x = pc_step(x, sigma, sigma_next, prior, snr, chunk, generator, corrector_sigma, iscs)
        # whole volume: n_admm ADMM-TV iterations with (z, u) carried across diffusion steps
        if reset_admm:
            state = ADMMState.zeros(x, len(D))
        for _ in range(n_admm):
            x, state = admm_tv_step(x, state, y, A, D, lam, rho, n_cg, ATy, cg_dims)
        if callback is not None:
            callback(i, x, state)
    if final_correction if final_correction is not None else getattr(A, "final_correction", False):
        x = kaczmarz_correction(x, y, A)
    return x


def slicewise(y, A, prior, n_steps=100, snr=0.16, n_cg=50, chunk=12, final_correction=None, corrector_sigma="next",
              generator=None, progress=True, callback=None):
    """The slice-wise baseline: the same PC sampler with per-slice data consistency and no z
    coupling (every axial slice is an independent 2D posterior sample; score-CT / POCS style).

    The data-consistency step is ``n_cg`` CG iterations on A^T A x = A^T y per slice, warm-started
    at the current sample. 50 by default, chosen on validation (book appendix "Validation"): at a
    90 degree arc 20.31 / 23.37 / 28.63 dB with 5 / 20 / 50, at 8 views 23.04 / 23.21 / 23.23; on
    MRI it converges in 3. Its cost stays a fraction of the network's (90 views: about 20% of a
    step). Arguments as ``diffusion_mbir``.

    Explained in: chapter "DiffusionMBIR for sparse-view CT" (book/05_diffusionmbir.ipynb).
    """
    return diffusion_mbir(y, A, prior, n_steps=n_steps, snr=snr, axes=None, n_cg=n_cg, chunk=chunk,
                          final_correction=final_correction, corrector_sigma=corrector_sigma, generator=generator,
                          progress=progress, callback=callback)


def dps(y, A, prior, n_steps=200, zeta=1.0, generator=None, progress=True, callback=None):
    """Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1), VE form.

    Each step: x0_hat = D(x; sigma_i) with gradients, the reverse-diffusion predictor with the
    score (x0_hat - x) / sigma_i^2, then a gradient step on each slice's measurement residual
    through the denoiser: x_k <- x_k - zeta grad_{x_k} ||y_k - A x0_hat_k|| for every axial slice
    k (one norm per slice, so a slice's step does not depend on how many slices share the call,
    and the slices stay independent: no z coupling). One NFE plus one backward pass per step.

    Explained in: chapter "Diffusion posterior sampling in 2D" (book/04_posterior_2d.ipynb).
    """
    y = _check(y, A, prior, 0.0, 1.0, n_steps=n_steps)
    sigmas = ve_sigmas(n_steps, prior.sigma_min, prior.sigma_max).tolist() + [0.0]
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


def dds(y, A, prior, n_steps=50, eta=0.85, lam=None, rho=None, axes="z", n_admm=1, n_cg=5,
        final_correction=False, boundary="neumann", iscs=None, prior_perp=None, plane="coronal", perp_every=2,
        generator=None, progress=True, callback=None):
    """DDS, decomposed diffusion sampling (Chung, Lee, Ye, ICLR 2024), VE form, one NFE per step.

    For sigma_i on a geometric grid of ``n_steps`` levels:

    1. x0_hat = D(x; sigma_i), the Tweedie (MMSE) estimate from the prior;
    2. x0_hat <- ``n_admm`` ADMM-TV iterations with ``n_cg`` CG steps, warm-started at x0_hat,
       (z, u) carried across steps (``axes=None``: plain CG data consistency per slice);
    3. re-noise: x = x0_hat + sigma_{i+1} (eta xi + sqrt(1 - eta^2) eps_hat), with
       eps_hat = (x - D(x; sigma_i)) / sigma_i the network's noise estimate (DDIM-style:
       eta = 0 is deterministic, eta = 1 fresh noise only).

    lam, rho default to ``DDS_LAM_REL`` and ``DDS_RHO_REL`` times ||A^T A|| (``A.normal_norm()``,
    as ``diffusion_mbir``; at 8 views, 64^2: lam = 0.198, rho = 12.4). Returns the last x0_hat.
    DDS has no final Kaczmarz step; ``final_correction=True`` adds the DiffusionMBIR one (ablation).
    With eta = 1 the re-noise is fresh noise of variance sigma_{i+1}^2 on top of x0_hat: not the
    DDPM posterior's smaller variance, so the output is not an exact posterior sample.

    What came after (chapter "Beyond TV along z", book/10_beyond.ipynb):
    ``iscs`` P: the noise xi (and x_T) is ISCS noise, correlated along z (``iscs_noise``).
    ``prior_perp``: a second 2D prior on ``plane`` slices (TPDM-style); step i uses it instead of
    ``prior`` when i % perp_every == perp_every - 1 (2: alternate). A slab ``prior`` (runs of k
    slices) denoises a partition of the volume into runs that shifts by one slice every step
    (``tweedie`` with offset i), so over the steps every slice is blended with both neighbours.

    Explained in: chapter "Making it fast" (book/09_speed.ipynb).
    """
    lam, rho = scaled_defaults(A, lam, rho, DDS_LAM_REL, DDS_RHO_REL) if axes else (0.0, 1.0)
    y = _check(y, A, prior, lam, rho, n_steps=n_steps, n_admm=n_admm, n_cg=n_cg)
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if prior_perp is not None and not (isinstance(perp_every, int) and perp_every >= 1):
        raise ValueError(f"perp_every must be a whole number of steps >= 1, got {perp_every!r}")
    ATy = A.adjoint(y)
    sigmas = ve_sigmas(n_steps, prior.sigma_min, prior.sigma_max).tolist() + [0.0]
    x = prior.sigma_max * noise(ATy, iscs, generator)
    D = tv_operators(axes, boundary) if axes else ()
    cg_dims = None if D else (-2, -1)
    state = ADMMState.zeros(x, len(D))
    for i in tqdm(range(n_steps), disable=not progress, desc="DDS"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        perp = prior_perp is not None and i % perp_every == perp_every - 1
        x0_hat = tweedie(x, sigma, prior_perp, plane) if perp else tweedie(x, sigma, prior, offset=i)   # 1 NFE / slice
        eps_hat = (x - x0_hat) / sigma
        for _ in range(n_admm):                                        # ADMM-TV-z on the clean estimate
            x0_hat, state = admm_tv_step(x0_hat, state, y, A, D, lam, rho, n_cg, ATy, cg_dims)
        x = x0_hat + sigma_next * (eta * noise(x, iscs, generator) + math.sqrt(1 - eta**2) * eps_hat)
        if callback is not None:
            callback(i, x0_hat, state)
    if final_correction:
        x0_hat = kaczmarz_correction(x0_hat, y, A)
    return x0_hat


# The 3D samplers by method name (``reconstruct`` dispatches on it).
SAMPLERS = {"slicewise": slicewise, "diffusionmbir": diffusion_mbir, "dds": dds}
