"""Validation sweeps of the issue "Priors that beat TV on real anatomy": why the coupled samplers
lose where they lose, measured on the validation volumes only (the CT chest aorta, the MR head
brain1), under the reported protocol with two repeats. One JSON of rows per sweep in
runs/validation_sweeps/ (a run already there is kept: rerun to resume):

    python scripts/validation_sweeps.py la90      # 90 degree arc: the x-update's CG budget
    python scripts/validation_sweeps.py mri_x8    # uniform 1D x8: DDS's data consistency and TV weight
    python scripts/validation_sweeps.py sv8       # 8 views: DDS's eta, CG budget, TV weight, steps
    python scripts/validation_sweeps.py mri_tv_x4 # the baseline 3D ADMM-TV on MRI: lam x rho grid per mask
    python scripts/validation_sweeps.py mri_tv_x8
    python scripts/validation_sweeps.py mri_tv_vd2d
    python scripts/validation_sweeps.py la90 --table

- la90: on the reported cells slice-wise with 50 CG iterations per step came within 0.6 dB of
  ADMM-TV on lung2 while slice-wise with one (DiffusionMBIR's budget) lost 5.6 dB, as
  DiffusionMBIR did; the suspect is the CG budget of the x-update.
- mri_x8: DDS tied with ADMM-TV on ch2 (+0.41 +- 0.40 dB) with the largest spread of any row.
- sv8: DDS on lung2 at 8 views was +1.86 +- 0.03 dB over ADMM-TV where the issue's target is +2;
  every DDS setting the other sweeps left alone (eta, steps) and those they swept, on aorta.
- mri_tv_*: 3D ADMM-TV barely beat the zero-filled image on ch2 at x8 (19.61 against 19.59 dB):
  is the baseline tuned? lam x {1, 4, 16, 64} and rho x {1, 10, 100} of its default on brain1,
  per mask (noise-free: the repeats agree, ADMM has no randomness).
"""
import json
import pathlib
import sys
import time

from dmbir_edu import experiments, tables

OUT = pathlib.Path(__file__).resolve().parent.parent / "runs" / "validation_sweeps"
DDS_LAM = experiments.resolved_kwargs("mri", "uniform1d-x8", "dds", 64)["lam"]   # DDS's lam on that operator
DDS_LAM_CT = experiments.resolved_kwargs("sparse_view", 8, "dds", 64)["lam"]
TV_MRI = experiments.resolved_kwargs("mri", "uniform1d-x8", "admm_tv", 64, defaults=True)   # ||M^T M|| = 1: every mask
SWEEPS = {   # name -> (task, setting, {label: (method, overrides)})
    "la90": ("limited_angle", 90.0, {
        "admm_tv": ("admm_tv", {}), "slicewise": ("slicewise", {}),
        **{f"diffusionmbir_cg{k}": ("diffusionmbir", dict(n_cg=k)) for k in (1, 5, 20)},
        **{f"dds_cg{k}": ("dds", dict(n_cg=k)) for k in (5, 20, 50)}}),
    "mri_x8": ("mri", "uniform1d-x8", {
        "admm_tv": ("admm_tv", {}), "diffusionmbir": ("diffusionmbir", {}),
        **{f"dds_cg{k}": ("dds", dict(n_cg=k)) for k in (5, 20)},
        **{f"dds_lam{f:g}": ("dds", dict(lam=f * DDS_LAM)) for f in (0.25, 4.0)}}),
    "sv8": ("sparse_view", 8, {
        "admm_tv": ("admm_tv", {}), "dds": ("dds", {}),
        **{f"dds_eta{e:g}": ("dds", dict(eta=e)) for e in (0.5, 1.0)},
        **{f"dds_cg{k}": ("dds", dict(n_cg=k)) for k in (20, 2, 3)},
        "dds_eta1_cg3": ("dds", dict(eta=1.0, n_cg=3)),
        **{f"dds_lam{f:g}": ("dds", dict(lam=f * DDS_LAM_CT)) for f in (0.25, 4.0)},
        "dds_steps100": ("dds", dict(n_steps=100))}),
    **{f"mri_tv_{name}": ("mri", mask, {
        f"admm_tv_lam{a:g}_rho{b:g}": ("admm_tv", dict(lam=a * TV_MRI["lam"], rho=b * TV_MRI["rho"]))
        for a in (1, 4, 16, 64) for b in (1, 10, 100)})
       for name, mask in (("x4", "uniform1d-x4"), ("x8", "uniform1d-x8"), ("vd2d", "vd2d-x8"))},
}
PROTOCOL = experiments.protocol_of(experiments.REPORTED, source="real", split="validation", n_volumes=1,
                                   repeats=(0, 1))


def sweep(name):
    task, setting, runs = SWEEPS[name]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    for label, (method, kw) in runs.items():
        if label in {r["label"] for r in rows}:
            continue
        t0 = time.perf_counter()
        new = [r | {"label": label} for r in experiments.run(task, [setting], [method], PROTOCOL,
                                                              overrides={method: kw}, progress=False)]
        rows += new
        path.write_text(json.dumps(rows, indent=1, default=str))
        print(f"{name} {label}: {tables.mean_over_axes(new[0]):.2f} dB (repeat 0), {time.perf_counter() - t0:.0f} s",
              flush=True)
    return rows


def table(rows):
    rows = [r | {"method": r["label"]} for r in rows]
    for rec in tables.compared(rows, ("admm_tv",)):
        d = rec.get("vs admm_tv")
        print(f"{rec['method']:>20} {rec['psnr']:6.2f} +- {rec['psnr_sd']:.2f}  flicker {rec['flicker']:.2f}  dz "
              f"{rec['dz_ratio']:.2f}  " + ("" if d is None else f"- admm_tv {d[0]:+.2f} +- {d[1]:.2f} ({d[2]})"))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in SWEEPS:
        raise SystemExit(__doc__)
    out = OUT / f"{sys.argv[1]}.json"
    table(json.loads(out.read_text()) if "--table" in sys.argv else sweep(sys.argv[1]))
