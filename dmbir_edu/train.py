"""Train the 2D prior by denoising score matching on axial slices of the phantom family.

    python -m dmbir_edu.train --run runs/phantom64 --steps 6000          # resumable
    python -m dmbir_edu.train --run runs/phantom64 --export phantom64    # ship the EMA weights

Loss (EDM form of denoising score matching): with x_0 a clean slice, sigma drawn from the
noise distribution below and xi ~ N(0, I),

    L = E[ lambda(sigma) || D(x_0 + sigma xi; sigma) - x_0 ||^2 ],
    lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2.

Minimizing it makes D the MMSE denoiser, hence (D - x) / sigma^2 the score.
sigma is drawn half log-uniformly on [sigma_min, sigma_max] (every level the VE sampler
visits) and half from EDM's log-normal (ln sigma ~ N(-1.2, 1.2^2), where detail is learned).

Determinism: step k uses phantom seeds 2k and 2k+1 of ``data.TRAIN_SEEDS`` and a generator
seeded by (seed, k), so a resumed run sees exactly the batches an uninterrupted one would.

Explained in: chapter "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb) and the
appendix "Training the prior".
"""
import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import data
from .prior import DEFAULT_UNET, SIGMA_DATA, WEIGHTS_DIR, Prior, sha256


def training_batch(k, seed, batch_size, image_size, slices_per_volume=16):
    """Batch k: (batch_size, 1, H, W) random axial slices of fresh phantoms, with random flips."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + k)
    n_vol = -(-batch_size // slices_per_volume)
    n_seeds = len(data.TRAIN_SEEDS)
    slices = []
    for j in range(n_vol):
        vol = data.phantom((n_vol * k + j) % n_seeds, image_size)
        idx = torch.randint(0, vol.shape[0], (slices_per_volume,), generator=g)
        slices.append(vol[idx])
    x0 = torch.cat(slices)[:batch_size, None]
    flip = torch.rand(2, generator=g)
    if flip[0] < 0.5:
        x0 = x0.flip(-1)
    if flip[1] < 0.5:
        x0 = x0.flip(-2)
    return x0, g


def sample_sigma(n, sigma_min, sigma_max, g):
    """Half log-uniform on [sigma_min, sigma_max], half EDM log-normal, clamped to the range."""
    u = torch.rand(n, generator=g)
    log_uniform = sigma_min * (sigma_max / sigma_min) ** u
    log_normal = torch.exp(-1.2 + 1.2 * torch.randn(n, generator=g))
    pick = torch.rand(n, generator=g) < 0.5
    return torch.where(pick, log_uniform, log_normal).clamp(sigma_min, sigma_max)


def dsm_loss(prior, x0, g):
    """Denoising score matching loss (EDM weighting) on a batch x0 of shape (B, 1, H, W).

    sigma and the noise come from the CPU generator ``g`` and move to the prior's device, so a
    run draws the same numbers on every device."""
    sigma = sample_sigma(x0.shape[0], prior.sigma_min, prior.sigma_max, g).to(prior.device)
    xi = torch.randn(x0.shape, generator=g).to(prior.device)
    x0 = x0.to(prior.device)
    D = prior(x0 + sigma.reshape(-1, 1, 1, 1) * xi, sigma)
    lam = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    return (lam.reshape(-1, 1, 1, 1) * (D - x0) ** 2).mean()


def train(run_dir, steps, config=DEFAULT_UNET, batch_size=32, lr=5e-4, warmup=200, ema_decay=0.999,
          sigma_min=0.01, sigma_max=40.0, seed=0, checkpoint_every=250, progress=True, device="cpu"):
    """Train (or resume) a prior on ``device``; checkpoints and a CSV loss log go to ``run_dir``.

    Returns the EMA ``Prior`` (the weights used at inference).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(dict(
        steps=steps, config=config, batch_size=batch_size, lr=lr, warmup=warmup, ema_decay=ema_decay,
        sigma_min=sigma_min, sigma_max=sigma_max, seed=seed)))
    torch.manual_seed(seed)
    prior = Prior(config, sigma_min, sigma_max).to(device)
    ema = copy.deepcopy(prior).requires_grad_(False)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    ckpt, start = run_dir / "checkpoint.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location=device)
        prior.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
    log = (run_dir / "log.csv").open("a")
    if start == 0:
        log.write("step,loss,images_per_s,elapsed_s\n")
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="train")
    t0, loss_avg = time.time(), None
    for k in bar:
        x0, g = training_batch(k, seed, batch_size, prior.image_size)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (k + 1) / warmup)
        loss = dsm_loss(prior, x0, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            beta = min(ema_decay, (1 + k) / (10 + k))
            for pe, p in zip(ema.parameters(), prior.parameters()):
                pe.lerp_(p, 1 - beta)
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if (k + 1) % 25 == 0:
            elapsed = time.time() - t0
            log.write(f"{k + 1},{loss_avg:.5f},{(k + 1 - start) * batch_size / elapsed:.1f},{elapsed:.0f}\n")
            log.flush()
        if (k + 1) % checkpoint_every == 0 or k + 1 == steps:
            torch.save({"model": prior.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "step": k + 1}, run_dir / "checkpoint.tmp")
            (run_dir / "checkpoint.tmp").replace(ckpt)
    log.close()
    return ema.eval()


def export(run_dir, name, command):
    """Write the EMA weights of ``run_dir`` as ``weights/<name>.safetensors``, its JSON card, and a
    copy of the run's loss log as ``weights/<name>.log.csv`` (the book plots the training curve
    from it). The card's "quality" is measured here: ``prior_quality.denoising_table``."""
    from safetensors.torch import save_file

    from .prior import load_prior
    from .prior_quality import denoising_table

    run_dir = Path(run_dir)
    args = json.loads((run_dir / "args.json").read_text())
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True, map_location="cpu")
    net = {k.removeprefix("net."): v.contiguous() for k, v in state["ema"].items()}
    path = WEIGHTS_DIR / f"{name}.safetensors"
    save_file(net, path)
    card = dict(name=name, unet=args["config"], sigma_min=args["sigma_min"], sigma_max=args["sigma_max"],
                steps=int(state["step"]), batch_size=args["batch_size"], images_seen=int(state["step"]) * args["batch_size"],
                data=f"axial 64x64 slices of dmbir_edu.data.phantom(seed), seeds from 0 (2 volumes per step), seed={args['seed']}",
                training_command=command, parameters=sum(v.numel() for v in net.values()),
                sha256=sha256(path), quality={}, loss_log=f"{name}.log.csv")
    shutil.copyfile(run_dir / "log.csv", WEIGHTS_DIR / f"{name}.log.csv")
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    table = denoising_table(load_prior(name))
    card["quality"] = {"denoising_psnr_db_held_out_slices": {str(s): r for s, r in table.items()},
                       "measured_by": "dmbir_edu.prior_quality.denoising_table (TV weight tuned on validation slices)"}
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dmbir_edu.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True,
                   help="folder for the checkpoint, args.json and the loss log; a run with a checkpoint resumes")
    p.add_argument("--steps", type=int, default=6000,
                   help="train up to this step, counting the steps already in --run")
    p.add_argument("--batch-size", type=int, default=32, help="slices per training step")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate, after a 200-step linear warm-up")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, the batches and the noise")
    p.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda (same batches on every device)")
    p.add_argument("--export", metavar="NAME",
                   help="do not train: write the EMA weights of --run to dmbir_edu/weights/NAME.safetensors, "
                        "with its card NAME.json and loss log")
    p.add_argument("--command", default=None,
                   help="with --export: the training command the card records; "
                        "if not given, the export's own command line")
    a = p.parse_args(argv)
    if a.export:
        card = export(a.run, a.export, a.command or "python -m dmbir_edu.train " + " ".join(sys.argv[1:]))
        print(json.dumps(card, indent=1))
    else:
        train(a.run, a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device)


if __name__ == "__main__":
    main()
