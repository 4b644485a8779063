"""Tables and files of experiment rows: the text table the command line prints, mean PSNR over
rows, and the reconstructions saved beside them (float16 torch files).

A row is a dict as ``experiments.run`` returns it: task, setting, noise, method (the row's label),
volume, per-axis {"psnr", "ssim"}, seconds, kwargs, nfe_per_slice (and with ``keep=True`` the
volumes x_hat and x).
"""
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


def volume_key(row):
    """The key of a row's reconstruction in a ``save_volumes`` file."""
    return "/".join(str(row[f]) for f in ("task", "setting", "noise", "method", "volume"))


def load_volumes(path):
    """The volumes of a ``save_volumes`` file, as float32: (truths by volume, reconstructions by ``volume_key``)."""
    data = torch.load(path, weights_only=True)
    return ({k: v.float() for k, v in data["x"].items()}, {k: v.float() for k, v in data["x_hat"].items()})
