"""How good is a prior? Denoising PSNR on held-out slices against TV denoising, and samples.

    python -m dmbir_edu.prior_quality                    # table for the shipped prior
    python -m dmbir_edu.prior_quality --samples samples.png

For each noise level sigma, held-out axial slices x_0 (of ``data.TEST_SEEDS`` volumes) get
noise x_0 + sigma xi and are denoised by the prior's D(x; sigma) and by TV denoising
(Chambolle, scikit-image) whose weight is tuned per level on ``data.VALIDATION_SEEDS`` slices.

Explained in: chapter "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb).
"""
import argparse

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

from . import data
from .data import held_out_slices, real_slices
from .metrics import psnr
from .operators import positive_int_arg
from .prior import available_priors, load_prior

SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.4)
TV_WEIGHTS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)


def tv_denoise(x, weight):
    """2D TV denoising (Chambolle) of every slice of x (..., H, W)."""
    flat = x.reshape(-1, *x.shape[-2:])
    return torch.stack([torch.from_numpy(denoise_tv_chambolle(s.numpy().astype(np.float64), weight=weight)).float()
                        for s in flat]).reshape(x.shape)


def denoising_table(prior, sigmas=SIGMAS, seed=0, per_volume=8, modality="phantom", plane="axial", slab=1):
    """{sigma: {"noisy", "tv", "tv_weight", "prior"}} mean PSNR (dB) over held-out slices.

    ``modality`` "phantom": slices of the ``data.TEST_SEEDS`` phantoms, TV tuned on the
    ``VALIDATION_SEEDS`` ones (``plane`` and ``slab`` as the prior was trained: ``held_out_slices``).
    "ct" / "mr": {"validation": table, "test": table} on 32 slices of the real validation and test
    volumes, TV tuned on the validation slices for both."""
    if modality != "phantom":
        val, test = (real_slices(modality, split, prior.image_size) for split in ("validation", "test"))
        return {"validation": _table(prior, val, val, sigmas, seed), "test": _table(prior, val, test, sigmas, seed)}
    val = held_out_slices(data.VALIDATION_SEEDS, prior.image_size, per_volume, plane, slab)
    test = held_out_slices(data.TEST_SEEDS, prior.image_size, per_volume, plane, slab)
    return _table(prior, val, test, sigmas, seed)


def _table(prior, val, test, sigmas, seed):
    g = torch.Generator().manual_seed(seed)
    mean_psnr = lambda a, b: float(np.mean([psnr(u, v) for u, v in zip(a, b)]))
    out = {}
    for sigma in sigmas:
        noisy_val = val + sigma * torch.randn(val.shape, generator=g)
        w = max(TV_WEIGHTS, key=lambda w: mean_psnr(tv_denoise(noisy_val, w), val))
        noisy = test + sigma * torch.randn(test.shape, generator=g)
        out[sigma] = dict(noisy=mean_psnr(noisy, test), tv=mean_psnr(tv_denoise(noisy, w), test), tv_weight=w,
                          prior=mean_psnr(prior.denoise(noisy, sigma), test))
    return out


def format_table(tab):
    lines = [f"{'sigma':>6}{'noisy':>8}{'TV (tuned)':>12}{'prior':>8}{'gain':>7}"]
    for s, r in tab.items():
        lines.append(f"{s:>6}{r['noisy']:>8.2f}{r['tv']:>12.2f}{r['prior']:>8.2f}{r['prior'] - r['tv']:>+7.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dmbir_edu.prior_quality", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--prior", default="phantom64", choices=available_priors(),
                   help="name of a shipped prior (dmbir_edu/weights/NAME.json)")
    p.add_argument("--samples", metavar="PNG",
                   help="also write a PNG grid: 16 unconditional samples above 16 held-out phantom slices")
    p.add_argument("--steps", type=positive_int_arg, default=200,
                   help="predictor-corrector steps per sample (with --samples)")
    a = p.parse_args(argv)
    prior = load_prior(a.prior)
    print(f"prior {a.prior}: denoising PSNR (dB), mean over {8 * len(data.TEST_SEEDS)} held-out slices")
    print(format_table(denoising_table(prior)))
    if a.samples:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .sampling import sample
        x = sample(prior, 16, a.steps, generator=torch.Generator().manual_seed(0))
        real = held_out_slices(data.TEST_SEEDS, prior.image_size, 4)
        fig, ax = plt.subplots(4, 8, figsize=(9, 4.8))
        for i, im in enumerate(torch.cat([x, real])):
            ax.flat[i].imshow(im, cmap="gray", vmin=0, vmax=1)
            ax.flat[i].axis("off")
        fig.suptitle(f"top two rows: samples ({a.steps} PC steps); bottom two rows: held-out phantom slices")
        fig.savefig(a.samples, dpi=80, bbox_inches="tight")
        print(f"wrote {a.samples}")


if __name__ == "__main__":
    main()
