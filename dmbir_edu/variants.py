"""Ablations of the papers and what came after, composed from the steps of ``sampling``.

* ``diffusion_mbir_variant``: DiffusionMBIR with the options the paper and its released code
  vary: TV along z or all three axes (``axes``, None for no TV: the slice-wise sampler), the
  boundary of D_z, (v, u) restarted every step (``reset_admm``), the corrector's noise level
  (``corrector_sigma="current"``, as released), the final Kaczmarz step, and ISCS noise.
* ``dds_variant``: DDS with TV along other axes or none (``axes=None``: DDS without coupling),
  the Kaczmarz step, and the successors of chapter "Beyond TV along z": ISCS noise (``iscs``),
  a perpendicular prior (``prior_perp``, TPDM-style) and slab priors (a prior with
  ``channels`` k > 1, DiffusionBlend-style).

With their defaults both give exactly the core samplers' numbers (``sampling.diffusion_mbir``,
``sampling.dds``; tested). Building blocks for the successors: ``iscs_noise`` and ``tweedie``.

Explained in: chapters "DiffusionMBIR for sparse-view CT" (book/05_diffusionmbir.ipynb) and
"Beyond TV along z" (book/10_beyond.ipynb).
"""
import math

import torch
from tqdm.auto import tqdm

from .mbir import ADMMState, admm_tv_step, data_consistency, tv_operators
from .operators import generator_device, randn_like, scaled_defaults
from .planes import from_plane, to_plane
from .sampling import DDS, DMBIR, check_problem, kaczmarz_correction, pc_step

# The released DiffusionMBIR's CT constants (its sparse-view script; reference spec, section 1.8),
# for its 256 x 256 slices.
RELEASED_LAM, RELEASED_RHO, RELEASED_SIZE = 0.04, 10.0, 256


def released_settings(A):
    """The settings of the released DiffusionMBIR code for CT, in this package's units: what "as
    released" means in any label. The corrector at sigma_i, a periodic D_z (last slice tied to the
    first), one CG iteration, and the release's lam = 0.04, rho = 10 converted twice: divided by
    c = pi / (2 n_views), since its back-projector is about c A^T (chapter 5 derives it), and
    multiplied by n / 256 for slices of n x n pixels instead of its 256 x 256, since line
    integrals in pixel units, and with them ||A^T A||, grow with the image side (measured ratio
    of ||A^T A|| between 256 and 64 pixels: 4.00 at 8, 4 and 2 views). For
    ``diffusion_mbir_variant``; CT only."""
    if not hasattr(A, "n_angles"):
        raise ValueError(f"the release's constants are those of its CT code; no release setting for {type(A).__name__}")
    scale = A.image_size / RELEASED_SIZE / (math.pi / (2 * A.n_angles))
    return dict(corrector_sigma="current", boundary="periodic", n_cg=1, lam=RELEASED_LAM * scale,
                rho=RELEASED_RHO * scale)


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


def noise(x, iscs=None, generator=None):
    """The sampler's fresh noise for the volume x: independent per voxel (``iscs`` None) or ISCS
    noise with anchor spacing ``iscs`` (``iscs_noise``)."""
    return randn_like(x, generator) if iscs is None else iscs_noise(x, iscs, generator)


def tweedie(x, sigma, prior, plane="axial", offset=0, stride=None):
    """D(x; sigma) for a volume x (D, H, W) from a 2D prior on its ``plane`` slices
    (``planes.to_plane``: axial, or coronal / sagittal for a perpendicular prior).

    A slab prior (``prior.channels`` = k > 1: runs of k adjacent slices, DiffusionBlend-style)
    denoises runs of k slices starting every ``stride`` slices (default k: a partition, one
    network call per slice; 1: every run) from ``offset``, the volume's ends padded by repeating
    its first and last slice; each slice takes the mean of the estimates of the runs that hold it.
    Since the score is (D - x) / sigma^2, that is blending the runs' scores.
    """
    s = to_plane(x, plane)
    k = prior.channels
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


def start(y, A, prior, preset, lam, rho, axes, boundary, n_steps, iscs, generator, **counts):
    """What both variant samplers set up before their loop: checked data, A^T y, the noise levels,
    x_N = sigma_max xi, the difference operators of ``axes`` (none for None / ""), the ADMM state,
    and (lam, rho) (the preset's defaults scaled to A; unused without TV)."""
    lam, rho = scaled_defaults(A, lam, rho, preset) if axes else (0.0, 1.0)
    y = check_problem(y, A, prior, lam, rho, n_steps=n_steps, **counts)
    ATy = A.adjoint(y)
    x = prior.sigma_max * noise(ATy, iscs, generator)
    diffs = tv_operators(axes, boundary) if axes else ()
    return y, ATy, prior.sigmas(n_steps), x, diffs, ADMMState.zeros(x, len(diffs)), lam, rho


def couple(x, state, y, A, diffs, lam, rho, n_cg, ATy):
    """The whole-volume step: one ADMM-TV iteration along ``diffs``, or without any, per-slice
    data consistency (``mbir.data_consistency``)."""
    if diffs:
        return admm_tv_step(x, state, y, A, diffs, lam, rho, n_cg, ATy)
    return data_consistency(x, ATy, A, n_cg), state


def diffusion_mbir_variant(y, A, prior, n_steps=DMBIR.n_steps, snr=DMBIR.snr, lam=None, rho=None, n_admm=1,
                           n_cg=DMBIR.n_cg, chunk=DMBIR.chunk, generator=None, progress=True, callback=None, *,
                           axes="z", boundary="neumann", reset_admm=False, corrector_sigma="next",
                           final_correction=None, iscs=None):
    """``sampling.diffusion_mbir`` with the ablations of the paper and its released code.

    Parameters
    ----------
    axes : TV directions, "z" (the method) or "xyz"; None or "" for no TV, which makes the
        whole-volume step per-slice data consistency (``sampling.slicewise``'s loop).
    boundary : of the difference operators, "neumann" or "periodic" (the released code's).
    reset_admm : (v, u) restart from zero every step, so the z-penalty is quadratic (weight rho)
        and lam is unused; the method carries them.
    corrector_sigma : "next" (the method) or "current" (as released; ``sampling.pc_step``).
    final_correction : the Kaczmarz step at the end; default ``A.final_correction``.
    iscs : None, or the anchor spacing P of ISCS noise (``iscs_noise``) for x_N and every
        predictor and corrector step (chapter "Beyond TV along z").

    Other arguments as ``sampling.diffusion_mbir``.
    """
    y, ATy, sigmas, x, diffs, state, lam, rho = start(y, A, prior, DMBIR, lam, rho, axes, boundary, n_steps, iscs,
                                                      generator, n_admm=n_admm, n_cg=n_cg, chunk=chunk)
    for i in tqdm(range(n_steps), disable=not progress, desc="DiffusionMBIR" if diffs else "slice-wise"):
        xi = (iscs_noise(x, iscs, generator), iscs_noise(x, iscs, generator)) if iscs else None
        x = pc_step(x, sigmas[i], sigmas[i + 1], prior, snr, chunk, generator, corrector_sigma, xi)
        if reset_admm:
            state = ADMMState.zeros(x, len(diffs))
        for _ in range(n_admm):
            x, state = couple(x, state, y, A, diffs, lam, rho, n_cg, ATy)
        if callback is not None:
            callback(i, x, state)
    if A.final_correction if final_correction is None else final_correction:
        x = kaczmarz_correction(x, y, A)
    return x


def dds_variant(y, A, prior, n_steps=DDS.n_steps, eta=DDS.eta, lam=None, rho=None, n_admm=1, n_cg=DDS.n_cg,
                generator=None, progress=True, callback=None, *, axes="z", boundary="neumann", final_correction=False,
                iscs=None, prior_perp=None, plane="coronal", perp_every=2):
    """``sampling.dds`` with ablations and the successors of chapter "Beyond TV along z".

    Parameters
    ----------
    axes, boundary : as ``diffusion_mbir_variant`` (None: DDS without any coupling, per-slice
        data consistency).
    final_correction : True adds the DiffusionMBIR Kaczmarz step at the end (DDS has none).
    iscs : P, the anchor spacing of ISCS noise for x_N and every re-noise (``iscs_noise``).
    prior_perp : a second 2D prior on ``plane`` slices (TPDM-style): step i uses it instead of
        ``prior`` when i % perp_every == perp_every - 1 (2: alternate).

    A slab ``prior`` (``channels`` k > 1) denoises a partition of the volume into runs of k that
    shifts by one slice every step (``tweedie`` with offset i), so over the steps every slice is
    blended with both neighbours. Other arguments as ``sampling.dds``.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if prior_perp is not None and not (isinstance(perp_every, int) and perp_every >= 1):
        raise ValueError(f"perp_every must be a whole number of steps >= 1, got {perp_every!r}")
    y, ATy, sigmas, x, diffs, state, lam, rho = start(y, A, prior, DDS, lam, rho, axes, boundary, n_steps, iscs,
                                                      generator, n_admm=n_admm, n_cg=n_cg)
    for i in tqdm(range(n_steps), disable=not progress, desc="DDS"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        perp = prior_perp is not None and i % perp_every == perp_every - 1
        x0_hat = tweedie(x, sigma, prior_perp, plane) if perp else tweedie(x, sigma, prior, offset=i)
        eps_hat = (x - x0_hat) / sigma
        for _ in range(n_admm):
            x0_hat, state = couple(x0_hat, state, y, A, diffs, lam, rho, n_cg, ATy)
        x = x0_hat + sigma_next * (eta * noise(x, iscs, generator) + math.sqrt(1 - eta**2) * eps_hat)
        if callback is not None:
            callback(i, x0_hat, state)
    if final_correction:
        x0_hat = kaczmarz_correction(x0_hat, y, A)
    return x0_hat
