"""Tables and files of experiment rows: the text table the command line prints, mean PSNR over
rows, and the reconstructions saved beside them (float16 torch files).

A row is a dict as ``experiments.run`` returns it: task, setting, noise, method (the row's label),
volume, per-axis {"psnr", "ssim"}, seconds, kwargs, nfe_per_slice (and with ``keep=True`` the
volumes x_hat and x).
"""
import json
import pathlib

import torch

from . import metrics


def table(rows, per_volume=False):
    """Mean over volumes per (task, setting, noise, method) (or one line per volume with
    ``per_volume=True``): a text table with PSNR / SSIM per axis and seconds per volume."""
    fields = ("task", "setting", "noise", "method") + (("volume",) if per_volume else ())
    widths = (14, 13, 12, 15) + ((14,) if per_volume else ())
    head = "".join(f"{f:<{w}}" for f, w in zip(fields, widths)) + "".join(f"{a:>17}" for a in metrics.AXES) + \
        f"{'s/vol':>8}  n"
    lines = [head, " " * sum(widths) + "".join(f"{'PSNR   SSIM':>17}" for _ in metrics.AXES), "-" * len(head)]
    for key in dict.fromkeys(tuple(r.get(f, "noise-free") for f in fields) for r in rows):
        group = [r for r in rows if tuple(r.get(f, "noise-free") for f in fields) == key]
        mean = lambda a, m: sum(r[a][m] for r in group) / len(group)
        cells = "".join(f"{mean(a, 'psnr'):>10.2f}{mean(a, 'ssim'):>7.3f}" for a in metrics.AXES)
        secs = sum(r["seconds"] for r in group) / len(group)
        lines.append("".join(f"{str(k):<{w}}" for k, w in zip(key, widths)) + f"{cells}{secs:>8.1f}  {len(group)}")
    return "\n".join(lines)


def mean_psnr(rows, method, axes=tuple(metrics.AXES)):
    group = [r for r in rows if r["method"] == method]
    return sum(r[a]["psnr"] for r in group for a in axes) / (len(group) * len(axes))


def save_volumes(rows, path):
    """Write the volumes of ``run(..., keep=True)`` rows to ``path`` (torch file, float16) and remove
    them from the rows: ``{"x": {volume: truth}, "x_hat": {"task/setting/noise/method/volume": x_hat}}``."""
    out = {"x": {}, "x_hat": {}}
    for r in rows:
        out["x"][r["volume"]] = r.pop("x").half()
        out["x_hat"][volume_key(r)] = r.pop("x_hat").half()
    torch.save(out, path)


def load_cell(folder, name):
    """The rows of a saved cell ``folder/name.json`` (``experiments.run_cell``), with the rows of
    ``name@released.json`` in place of the cell's ``dmbir_released`` rows where that file exists
    (runs/evidence: the release's rows made again after a conversion error); [] if not saved."""
    folder = pathlib.Path(folder)
    path = folder / f"{name}.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    again = folder / f"{name}@released.json"
    if again.exists():
        rows = [r for r in rows if r["method"] != "dmbir_released"] + json.loads(again.read_text())
    return rows


def volume_key(row):
    """The key of a row's reconstruction in a ``save_volumes`` file: task/setting/noise/method/volume,
    and ``/r{repeat}`` after it for repeats other than 0 (so files of one repeat keep their keys)."""
    key = "/".join(str(row[f]) for f in ("task", "setting", "noise", "method", "volume"))
    return key + (f"/r{row['repeat']}" if row.get("repeat", 0) else "")


def load_volumes(path):
    """The volumes of a ``save_volumes`` file, as float32: (truths by volume, reconstructions by ``volume_key``)."""
    data = torch.load(path, weights_only=True)
    return ({k: v.float() for k, v in data["x"].items()}, {k: v.float() for k, v in data["x_hat"].items()})


def load_rows(rows_path, volumes_path):
    """Saved rows (a JSON list, ``rows_path``) with their volumes put back from a ``save_volumes`` file
    (``volumes_path``): each row gets ``x`` (its truth) and ``x_hat`` (its reconstruction), as float32."""
    x, x_hat = load_volumes(volumes_path)
    return [r | dict(x=x[r["volume"]], x_hat=x_hat[volume_key(r)])
            for r in json.loads(pathlib.Path(rows_path).read_text())]


# Repeats and uncertainty: every (volume, repeat) of a row is one paired sample (the same data
# and noise for every method), so methods are compared by the mean of their paired differences
# and its standard error; a method wins only outside a tie band of TIE_BAND standard errors.
TIE_BAND = 2.0


def mean_over_axes(row, metric="psnr"):
    """The mean of a row's metric over the three planes (axial, coronal, sagittal)."""
    return sum(row[a][metric] for a in metrics.AXES) / len(metrics.AXES)


def _stats(values):
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else float("nan")
    return mean, sd, n


def cell_key(row):
    return tuple(str(row.get(f, "")) for f in ("task", "setting", "noise"))


def summary(rows):
    """One record per (task, setting, noise, method): n samples (volumes x repeats), the mean and
    standard deviation over them of the PSNR averaged over the three planes, the mean per-plane
    PSNR, the mean flicker ratio and dz ratio (``metrics.along_z``), seconds and (MRI) the
    mask's effective acceleration."""
    out = []
    for key in dict.fromkeys(cell_key(r) + (r["method"],) for r in rows):
        group = [r for r in rows if cell_key(r) + (r["method"],) == key]
        mean, sd, n = _stats([mean_over_axes(r) for r in group])
        rec = dict(zip(("task", "setting", "noise", "method"), key), n=n, psnr=mean, psnr_sd=sd)
        rec |= {f"{a} psnr": sum(r[a]["psnr"] for r in group) / n for a in metrics.AXES}
        for f in ("flicker", "dz_ratio", "seconds", "effective_acceleration"):
            if all(f in r for r in group):
                rec[f] = sum(r[f] for r in group) / n
        out.append(rec)
    return out


def paired(rows, a, b, metric="psnr"):
    """{(task, setting, noise): (mean difference a - b, its standard error, n)} of the
    plane-averaged ``metric``, over the (volume, repeat) pairs both rows ran on; the standard
    error is sd / sqrt(n) (nan for one pair)."""
    def by_pair(method):
        return {cell_key(r) + (r["volume"], r.get("repeat", 0)): mean_over_axes(r, metric)
                for r in rows if r["method"] == method}
    ra, rb = by_pair(a), by_pair(b)
    out = {}
    for cell in dict.fromkeys(k[:3] for k in ra if k in rb):
        d = [ra[k] - rb[k] for k in ra if k[:3] == cell and k in rb]
        mean, sd, n = _stats(d)
        out[cell] = (mean, sd / n**0.5 if n > 1 else float("nan"), n)
    return out


def verdict(diff, se, band=TIE_BAND):
    """"wins", "loses" or "ties": a paired difference counts only outside ``band`` standard errors
    (with one pair, no error is known and every difference is a tie)."""
    if not se == se or abs(diff) <= band * se:          # se is nan with one pair
        return "ties"
    return "wins" if diff > 0 else "loses"


def compared(rows, reference=("admm_tv", "slicewise")):
    """``summary(rows)`` with, for each record and each method ``ref`` of ``reference`` that ran,
    ``record["vs " + ref] = (difference, standard error, verdict)``: the paired difference of the
    plane-averaged PSNR to ``ref`` in the same cell (``paired``) and its verdict through the tie
    band (``verdict``); absent on ``ref``'s own record."""
    out = []
    for rec in summary(rows):
        cell = (rec["task"], rec["setting"], rec["noise"])
        for ref in reference:
            d = paired(rows, rec["method"], ref).get(cell) if rec["method"] != ref else None
            if d is not None:
                rec[f"vs {ref}"] = (d[0], d[1], verdict(d[0], d[1]))
        out.append(rec)
    return out
