"""Agreement with ODL 1.0 where the two overlap: the projector and a TV solver."""
import numpy as np
import odl
import pytest
import torch

import dmbir_edu as dm


def test_projector_matches_odl_raytransform():
    n, n_views = 64, 60
    A = dm.ParallelBeamCT(n, dm.sparse_view_angles(n_views))
    space = odl.uniform_discr([-n / 2, -n / 2], [n / 2, n / 2], (n, n), dtype="float64")
    geometry = odl.applications.tomo.Parallel2dGeometry(
        odl.nonuniform_partition(A.angles.numpy()),          # our exact angles as sample points
        odl.uniform_partition(-A.n_detectors / 2, A.n_detectors / 2, A.n_detectors))
    R = odl.applications.tomo.RayTransform(space, geometry, impl="skimage")
    errs = []
    for seed in dm.data.TEST_SEEDS[:2]:
        x = dm.data.phantom(seed, n)[n // 2].double()
        ours = A(x).numpy()
        theirs = np.asarray(R(space.element(x.numpy())).data)
        errs.append(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    print(f"forward relative difference to ODL RayTransform (skimage): {np.round(errs, 4)}")
    # skimage's projector is itself approximate (rotate + sum); we bound the gap, not zero it
    assert max(errs) < 0.08


def test_admm_tv_objective_matches_odl_pdhg():
    """Same problem, two solvers: our ADMM-TV and ODL's PDHG, objective values within 1%."""
    shape, lam = (4, 12, 12), 0.05
    A = dm.ParallelBeamCT(12, dm.sparse_view_angles(6))
    x_true = dm.data.phantom(dm.data.TEST_SEEDS[0], 12, 4).double()
    y = A(x_true)
    x_admm = dm.admm_tv(y, A, lam=lam, rho=0.5, axes="zyx", n_iter=300, n_cg=20)
    f_admm = dm.tv_objective(x_admm, y, A, dm.tv_operators("zyx"), lam)

    space = odl.uniform_discr([0, 0, 0], list(shape), shape, dtype="float64")   # unit cells
    S = torch.block_diag(*[A.S.to_dense()] * shape[0]).numpy()
    flat = odl.FlatteningOperator(space)
    A_odl = odl.MatrixOperator(S, domain=flat.range, range=odl.rn(S.shape[0], dtype="float64")) @ flat
    grad = odl.Gradient(space, pad_mode="symmetric")          # forward differences, last one 0 (= our Neumann)
    L = odl.BroadcastOperator(A_odl, grad)
    y_odl = A_odl.range.element(y.reshape(-1).numpy())
    g = odl.functionals.SeparableSum(0.5 * odl.functionals.L2NormSquared(A_odl.range).translated(y_odl),
                                     lam * odl.functionals.L1Norm(grad.range))
    f = odl.functionals.ZeroFunctional(space)
    op_norm = 1.1 * odl.power_method_opnorm(L, maxiter=100)
    x = space.zero()
    odl.solvers.pdhg(x, f, g, L, niter=2000, tau=1 / op_norm, sigma=1 / op_norm)
    x_pdhg = torch.from_numpy(np.asarray(x.data))
    f_pdhg = dm.tv_objective(x_pdhg, y, A, dm.tv_operators("zyx"), lam)
    rel = abs(f_admm - f_pdhg) / f_pdhg
    print(f"objective: ADMM {f_admm:.6f}, ODL PDHG {f_pdhg:.6f}, relative difference {rel:.2e}")
    assert rel < 0.01
