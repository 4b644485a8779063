"""PSNR and SSIM per viewing axis.

A 3D method can look good in axial slices and fail in coronal and sagittal ones (slice-to-slice
inconsistency shows only there), so every number is reported per axis: the mean over the
axial (z), coronal (y) and sagittal (x) slices of the per-slice metric. Slices whose ground
truth is empty (all zero, e.g. outside the body) are skipped. Data range is 1 (volumes in [0, 1]).

Explained in: chapter "DiffusionMBIR for sparse-view CT" (book/05_diffusionmbir.ipynb).
"""
import numpy as np
import torch
from skimage.metrics import structural_similarity

from .planes import PLANES

AXES = {plane: axis for axis, plane in enumerate(PLANES)}     # plane -> the axis its slices fix


def psnr(x_hat, x_true, data_range=1.0):
    """PSNR in dB of one image or volume: 10 log10(data_range^2 / MSE)."""
    mse = torch.mean((torch.as_tensor(x_hat, dtype=torch.float64) - torch.as_tensor(x_true, dtype=torch.float64)) ** 2)
    return float(10 * torch.log10(data_range**2 / mse.clamp_min(1e-12)))


def ssim(x_hat, x_true, data_range=1.0):
    """SSIM of one 2D image (scikit-image, 7x7 uniform window; smaller and odd for images with a
    side under 7 pixels, e.g. coronal slices of a few-slice smoke-test volume)."""
    side = min(np.shape(x_true))
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(np.asarray(x_true, dtype=np.float64), np.asarray(x_hat, dtype=np.float64),
                                       data_range=data_range, win_size=max(win, 3)))


def per_axis(x_hat, x_true, data_range=1.0):
    """{"axial": {"psnr", "ssim"}, "coronal": ..., "sagittal": ...} for (D, H, W) volumes."""
    if x_hat.shape != x_true.shape or x_true.dim() != 3:
        raise ValueError("x_hat and x_true must be (D, H, W) volumes of one shape, "
                         f"got {tuple(x_hat.shape)} and {tuple(x_true.shape)}")
    x_hat = x_hat.detach().cpu().double()
    x_true = x_true.detach().cpu().double()
    out = {}
    for name, ax in AXES.items():
        pairs = [(a, b) for a, b in zip(x_hat.unbind(ax), x_true.unbind(ax)) if b.abs().max() > 0]
        out[name] = {"psnr": float(np.mean([psnr(a, b, data_range) for a, b in pairs])),
                     "ssim": float(np.mean([ssim(a.numpy(), b.numpy(), data_range) for a, b in pairs]))}
    return out


def axis_columns(row):
    """A row's ``per_axis`` scores as flat table columns: {"axial PSNR": ..., "axial SSIM": ..., ...,
    "sagittal SSIM": ...}, the column names of every per-axis table of the book."""
    return {f"{a} {m.upper()}": row[a][m] for a in AXES for m in ("psnr", "ssim")}


def _dz(t):
    return t[1:] - t[:-1]


def flicker_ratio(x_hat, x_true):
    """||D_z e|| / ||e|| for the error e = x_hat - x_true of a (D, H, W) volume (D_z: differences of
    neighbouring axial slices, no wrap-around): 0 for an error every slice shares, about
    sqrt(2 (D - 1) / D) for errors independent from slice to slice (1.32 for 8 slices, sqrt(2)
    for many). The metric of the book's thesis: TV along z
    should lower it."""
    e = (torch.as_tensor(x_hat, dtype=torch.float64) - torch.as_tensor(x_true, dtype=torch.float64))
    return float(_dz(e).norm() / e.norm().clamp_min(1e-12))


def dz_ratio(x_hat, x_true):
    """rms(D_z x_hat) / rms(D_z x_true): 1 when the reconstruction changes from slice to slice as
    much as the truth, above 1 when it flickers, below 1 when it smooths along z."""
    x_hat, x_true = torch.as_tensor(x_hat, dtype=torch.float64), torch.as_tensor(x_true, dtype=torch.float64)
    return float(_dz(x_hat).norm() / _dz(x_true).norm().clamp_min(1e-12))


def along_z(x_hat, x_true):
    """{"flicker": flicker_ratio, "dz_ratio": dz_ratio} of a (D, H, W) reconstruction, on the CPU."""
    x_hat, x_true = x_hat.detach().cpu(), x_true.detach().cpu()
    return {"flicker": flicker_ratio(x_hat, x_true), "dz_ratio": dz_ratio(x_hat, x_true)}
