"""dmbir_edu: DiffusionMBIR (CVPR 2023) and DDS (ICLR 2024), small and readable, on a laptop CPU.

Volumes are float32 tensors shaped (D, H, W), axial slices first, values in [0, 1].
"""
import importlib

from . import metrics
from .ct import ParallelBeamCT, limited_angle_angles, sparse_view_angles
from .mbir import ADMMState, admm_tv, admm_tv_step, conjugate_gradient, soft_threshold, tv_objective, tv_operators
from .mri import CartesianMRI, random1d_mask, uniform1d_mask, variable_density2d_mask
from .operators import FiniteDifference
from .prior import Prior, available_priors, load_prior
from .reconstruct import METHODS, reconstruct


def __getattr__(name):
    """``dm.data`` is imported on first use, so that ``python -m dmbir_edu.data`` runs it as a fresh module."""
    if name == "data":
        return importlib.import_module(".data", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "data", "metrics", "ParallelBeamCT", "sparse_view_angles", "limited_angle_angles", "CartesianMRI",
    "uniform1d_mask", "random1d_mask", "variable_density2d_mask", "FiniteDifference", "conjugate_gradient",
    "soft_threshold", "ADMMState", "admm_tv_step", "admm_tv", "tv_objective", "tv_operators", "Prior",
    "available_priors", "load_prior", "reconstruct", "METHODS",
]
