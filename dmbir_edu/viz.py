"""Pictures and sliders for the book.

Three helpers:

- :func:`orthoviews` draws axial, coronal and sagittal slices of several
  volumes side by side (plus optional error maps);
- :func:`sweep_widget` turns a list of pre-rendered pictures into a slider
  that works in the static online book, without a running kernel;
- :func:`live_slider` is ``ipywidgets.interactive`` for a running kernel
  (JupyterLab, Colab): it recomputes on every move, so it does nothing in
  the static book.
"""

import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from .planes import PLANES


def _to_numpy(volume):
    """A ``(D, H, W)`` torch tensor or array as a float numpy array."""
    if hasattr(volume, "detach"):  # torch.Tensor, on any device or dtype
        volume = volume.detach().cpu().float().numpy()
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volumes must be shaped (D, H, W), got shape {volume.shape}")
    return volume


def _slices(volume, index):
    """The three orthogonal slices through voxel ``index = (z, y, x)``.

    Coronal and sagittal slices keep z as their first (row) axis; they are
    drawn with ``origin="lower"`` so that z points up.
    """
    z, y, x = index
    return volume[z], volume[:, y, :], volume[:, :, x]


def _z_stretch(shape, z_stretch=None):
    """Rows per slice in coronal / sagittal views of a (D, H, W) volume: ``z_stretch`` if given, else
    1 for volumes at least half as deep as high and enough to make those views half as high as wide."""
    return max(1, round(shape[1] / (2 * shape[0]))) if z_stretch is None else int(z_stretch)


TEXT_WIDTH = 676   # px: the book's text column in a 1280 px window (sphinx-book-theme)
MAX_INCHES = 9.0   # the widest figure, in inches: shown at 676 / (72 x 9.0) = 1.04 px per point or more


def fit_width(width, height, max_width=MAX_INCHES):
    """A figure size (inches) no wider than ``max_width``: ``(width, height)`` scaled down together
    when too wide (the aspect kept), so that a figure of many panels is not shrunk by the page
    below the size of its text. Use as ``plt.subplots(..., figsize=dm.viz.fit_width(2.3 * n, 4.8))``."""
    scale = min(1.0, max_width / width)
    return width * scale, height * scale


PANEL = 1.45   # inches per panel of orthoviews
FONT = 9       # points, its titles and labels


def orthoviews(volumes, index=None, vmin=0.0, vmax=1.0, error_ref=None, error_vmax=None, z_stretch=None):
    """Axial, coronal and sagittal slices of several volumes, one row each.

    Parameters
    ----------
    volumes : dict[str, Tensor or ndarray]
        Volumes shaped ``(D, H, W)`` (z first), all of the same shape. Each
        one becomes a row; its key is the row's title.
    index : tuple of int (z, y, x), optional
        The voxel the three slices pass through. Default: the centre.
    vmin, vmax : float
        Grey-level range of the images (volumes live in [0, 1]).
    error_ref : Tensor, ndarray or str, optional
        A reference volume, or the key of one in ``volumes``. If given, each
        row gets three more panels: the error maps ``|x - ref|`` of the same
        slices, drawn in a separate colour map.
    error_vmax : float, optional
        Upper end of the error maps' colour range. Default: the largest
        error shown, so that all rows share one scale.
    z_stretch : int, optional
        Each slice drawn this many pixels high in the coronal and sagittal
        views (said in their titles). Default: 1 for volumes at least half as
        deep as they are high, else enough to make those views half as high
        as wide (a slab of 8 slices of a 64^2 volume: 4), so that thin slabs
        stay readable.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with ``len(volumes)`` rows and 3 columns (6 with
        ``error_ref``): each row labelled with its volume's name, each column
        titled once with its view and slice. Coronal and sagittal slices are
        drawn with z pointing up.

    Explained in: chapter 01 (forward models), used in every chapter after it.
    """
    arrays = {name: _to_numpy(v) for name, v in volumes.items()}
    if not arrays:
        raise ValueError("volumes is empty: pass a dict {title: (D, H, W) volume}")
    shape = next(iter(arrays.values())).shape
    for name, array in arrays.items():
        if array.shape != shape:
            raise ValueError(f"volume {name!r} has shape {array.shape}, expected {shape}")
    index = tuple(s // 2 for s in shape) if index is None else tuple(index)
    if len(index) != 3 or not all(0 <= i < s for i, s in zip(index, shape)):
        raise ValueError(f"index must be (z, y, x) inside {shape}, got {index}")

    errors = None
    if error_ref is not None:
        ref = arrays[error_ref] if isinstance(error_ref, str) else _to_numpy(error_ref)
        if ref.shape != shape:
            raise ValueError(f"error_ref has shape {ref.shape}, expected {shape}")
        errors = {name: np.abs(a - ref) for name, a in arrays.items()}
        if error_vmax is None:
            shown = [s for e in errors.values() for s in _slices(e, index)]
            error_vmax = max(float(s.max()) for s in shown) or 1.0

    z_stretch = _z_stretch(shape, z_stretch)
    n_cols = 3 if errors is None else 6
    # PANEL inches a panel: a 6-column figure stays under the 9.4 in (676 px at 72 px per inch)
    # of the book's text column at 1280 px, so that FONT-point text is shown at FONT px or more
    fig, axes = plt.subplots(len(arrays), n_cols, figsize=(PANEL * n_cols + (0.6 if errors else 0),
                                                           1.05 * PANEL * len(arrays) + 0.3),
                             squeeze=False, layout="constrained")
    z, y, x = index
    stretched = f", z x{z_stretch}" if z_stretch > 1 else ""
    where = {"axial": f"z = {z}", "coronal": f"y = {y}{stretched}", "sagittal": f"x = {x}{stretched}"}
    titles = [f"{view}\n{where[view]}" for view in PLANES] + [f"error\n{view}" for view in PLANES]
    for ax, title in zip(axes[0], titles):                 # column titles once, on the top row
        ax.set_title(title, fontsize=FONT)
    for row, (name, array) in zip(axes, arrays.items()):
        row[0].set_ylabel(name, fontsize=FONT)               # the row's title: the volume's name
        for ax, view, image in zip(row, PLANES, _slices(array, index)):
            origin, aspect = ("upper", 1) if view == "axial" else ("lower", z_stretch)
            ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, origin=origin, aspect=aspect)
        if errors is not None:
            for ax, view, image in zip(row[3:], PLANES, _slices(errors[name], index)):
                origin, aspect = ("upper", 1) if view == "axial" else ("lower", z_stretch)
                shown = ax.imshow(image, cmap="inferno", vmin=0.0, vmax=error_vmax, origin=origin, aspect=aspect)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if errors is not None:                                  # one colour scale for every error map
        bar = fig.colorbar(shown, ax=axes[:, 3:], shrink=min(1.0, 0.9 / len(arrays) ** 0.5 + 0.25), aspect=25)
        bar.set_label("|x - ref| (error)", fontsize=FONT)
        bar.ax.tick_params(labelsize=FONT)
    return fig


def _png_bytes(image, dpi=80):
    """PNG bytes of a matplotlib Figure (which is then closed), or PNG bytes as given."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = bytes(image)
        if not image.startswith(b"\x89PNG"):
            raise ValueError("images given as bytes must be PNG files")
        return image
    buffer = io.BytesIO()
    image.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(image)  # otherwise the notebook would also show it below the widget
    return buffer.getvalue()


def sweep_widget(images, labels=None, description="value"):
    """A slider over pre-rendered pictures that works without a kernel.

    The pictures are stored in the notebook as PNG ``Image`` widgets inside a
    ``Stack``; an ``IntSlider`` is ``jslink``-ed to the stack's
    ``selected_index`` and to a ``Dropdown`` that shows the current label.
    The links run in the browser, so the slider keeps working in the static
    online book, where no Python is running.

    Parameters
    ----------
    images : list of matplotlib.figure.Figure or bytes
        One picture per value of the swept parameter, in slider order.
        Figures are rendered to PNG and closed; bytes must be PNG files.
    labels : list of str, optional
        What each picture shows, e.g. ``["lam=0", "lam=0.01", ...]``.
        Default: ``"0"``, ``"1"``, ...
    description : str
        The slider's caption, e.g. ``"TV-z weight"``.

    Returns
    -------
    ipywidgets.VBox
        ``VBox([HBox([slider, dropdown]), stack])``. Display it as the last
        line of a cell. Keep the total size small (a few hundred kB): the
        PNGs are embedded in the page.

    Explained in: chapter 02 (MBIR), where it sweeps the TV-z weight.
    """
    pngs = [_png_bytes(image) for image in images]
    if not pngs:
        raise ValueError("images is empty: pass at least one Figure or PNG")
    labels = [str(i) for i in range(len(pngs))] if labels is None else [str(s) for s in labels]
    if len(labels) != len(pngs):
        raise ValueError(f"got {len(labels)} labels for {len(pngs)} images")

    fit = widgets.Layout(max_width="100%", margin="0")          # shrunk to the text column, never wider
    stack = widgets.Stack([widgets.Image(value=png, format="png", layout=fit) for png in pngs], selected_index=0)
    slider = widgets.IntSlider(
        value=0, min=0, max=len(pngs) - 1, description=description, readout=False
    )
    shown = widgets.Dropdown(options=list(zip(labels, range(len(pngs)))), value=0)
    shown.layout.width = "max-content"
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    widgets.jslink((slider, "value"), (shown, "index"))
    return widgets.VBox([widgets.HBox([slider, shown]), stack])


def live_slider(fn, **ranges):
    """Sliders with a "Run" button that calls ``fn`` with their values (needs a running kernel).

    A thin wrapper over ``ipywidgets.interactive`` (the widget behind
    ``ipywidgets.interact``) in its manual mode, e.g. ``live_slider(show, lam=(0.0, 1.0, 0.05))``:
    ``fn`` runs when the button is pressed, not when the cell runs, so a reconstruction of
    several seconds runs once per choice, and a notebook executed without a frontend
    (papermill, the book's build) does not run it inside an output widget, where executions
    of long callbacks were seen to stall until the cell's timeout. In the static online book
    nothing is recomputed: use :func:`sweep_widget` there, and the Colab button to run this.

    Parameters
    ----------
    fn : callable
        Called with one keyword argument per entry of ``ranges``; it should
        draw (or return) what it wants to show.
    **ranges
        ``ipywidgets.interact`` abbreviations: ``(min, max)`` or
        ``(min, max, step)`` for a slider, a list for a dropdown, a bool for
        a checkbox, or a widget.

    Returns
    -------
    ipywidgets.interactive
        The widget (controls + output). Display it as the last line of a cell.

    Explained in: chapter 02 (MBIR), for instructors running it live.
    """
    return widgets.interactive(fn, {"manual": True, "manual_name": "Run"}, **ranges)


def results_table(rows, caption):
    """Rows of ``experiments.run`` as an HTML table (a pandas Styler): one line per method (the
    mean over volumes, in the rows' order), PSNR and SSIM per axis with the best of each column in
    bold, the flicker ratio (lowest in bold) and dz ratio (``metrics.along_z``) where the rows have
    them, NFE per slice and seconds per volume; ``caption`` says what was run (data, steps, seed).
    The command line keeps its plain-text ``experiments.table``."""
    import pandas as pd

    from .metrics import axis_columns

    records = [{"method": r["method"], **axis_columns(r),
                **({"flicker": r["flicker"], "dz ratio": r["dz_ratio"]} if "flicker" in r else {}),
                "NFE / slice": r.get("nfe_per_slice", float("nan")), "s / volume": r["seconds"]} for r in rows]
    df = pd.DataFrame(records).groupby("method", sort=False).mean()
    scores = [c for c in df.columns if c.endswith(("PSNR", "SSIM"))]
    lower = ["flicker"] if "flicker" in df.columns else []
    formats = {"NFE / slice": "{:.0f}", "s / volume": "{:.0f}", "flicker": "{:.2f}", "dz ratio": "{:.2f}"}
    return styled_table(df, caption, higher=scores, lower=lower, formats=formats)


def styled_table(df, caption, higher=(), lower=(), within=None, formats=None):
    """A plain DataFrame as an HTML table (a pandas Styler), styled like ``results_table``: floats
    with 2 decimals (3 for columns named ``... SSIM``; ``formats`` maps a column to its own format
    string), the best value of each column of ``higher`` (largest is best) and of ``lower``
    (smallest is best) in bold -- within each group of the index level(s) ``within`` where given,
    e.g. one task and setting -- and ``caption`` saying what was run (data, steps, seed)."""
    import numpy as np

    def name(c):
        return c[-1] if isinstance(c, tuple) else str(c)

    def bold(s, largest):
        if within is None:
            best = s.max() if largest else s.min()
        else:
            best = s.groupby(level=within, sort=False).transform("max" if largest else "min")
        return np.where(s == best, "font-weight: bold", "")

    style = df.style.format({c: "{:.3f}" if name(c).endswith("SSIM") else "{:.2f}"
                             for c in df.select_dtypes("float").columns} | (formats or {}))
    for columns, largest in ((higher, True), (lower, False)):
        if len(columns):
            style = style.apply(bold, largest=largest, subset=list(columns))
    return style.set_caption(caption)


def _mosaic_png(rows, gap=2):
    """PNG bytes and width of rows of grey panels (each (h, w) in [0, 1], ``None`` for an empty
    place) at their own resolution on a white background: an 8-bit grey PNG, no matplotlib figure,
    so it stays small (the browser enlarges it)."""
    from PIL import Image

    h = max(p.shape[0] for row in rows for p in row if p is not None)
    w = max(p.shape[1] for row in rows for p in row if p is not None)
    lines = []
    for row in rows:
        line = []
        for p in row:
            p = np.ones((h, w)) if p is None else np.pad(p, ((0, h - p.shape[0]), (0, 0)), constant_values=1.0)
            line += [p, np.ones((h, gap))]
        lines += [np.concatenate(line[:-1], 1), np.ones((gap, len(row) * (w + gap) - gap))]
    mosaic = np.concatenate(lines[:-1], 0)
    buffer = io.BytesIO()
    Image.fromarray((255 * mosaic.clip(0, 1) + 0.5).astype(np.uint8)).save(buffer, format="png", optimize=True)
    return buffer.getvalue(), mosaic.shape[1]


def volume_viewer(volumes, error_ref=None, error_vmax=None, step=1, scale=3, vmin=0.0, vmax=1.0, z_stretch=None):
    """A kernel-free viewer of several 3D volumes side by side: a choice of axis (axial, coronal,
    sagittal) and, for each, a slider through its slices; with ``error_ref`` (a key of ``volumes``
    or a volume) the error map ``|x - ref|`` of each volume lies under it, on a second row, in grey
    from 0 (black) to ``error_vmax`` (white; default the largest error).

    Every picture is rendered here, once (a PNG per axis and slice position, every ``step``-th
    slice, each panel enlarged ``scale`` times), and stored in the notebook as ``Image`` widgets in
    ``Stack`` s whose links run in the browser, as in :func:`sweep_widget`: it works in the static
    online book. The PNGs hold the voxels at their own resolution and the page shows them
    ``scale`` times larger (less where that would be wider than the book's text column,
    ``TEXT_WIDTH``). Coronal and sagittal slices are drawn with z pointing up. Size: about
    (D + H + W) / step small PNGs (8-bit grey without error maps), a few kB per 64^2 panel.
    ``z_stretch``: each slice this many pixels high in the coronal and sagittal views, as in
    :func:`orthoviews` (default: 1, or more for slabs less than half as deep as high; said above
    the panels).

    Returns an ``ipywidgets.VBox``: the axis buttons, the panel titles, and one slider with its
    pictures per axis.

    Explained in: chapter "Beyond TV along z" (book/10_beyond.ipynb), used wherever a chapter shows
    a 3D reconstruction.
    """
    arrays = {name: _to_numpy(v) for name, v in volumes.items()}
    if not arrays:
        raise ValueError("volumes is empty: pass a dict {title: (D, H, W) volume}")
    shape = next(iter(arrays.values())).shape
    if any(a.shape != shape for a in arrays.values()):
        raise ValueError(f"all volumes must have one shape, got {[a.shape for a in arrays.values()]}")
    if not (isinstance(step, int) and step >= 1):
        raise ValueError(f"step must be a whole number of slices >= 1, got {step!r}")
    gray = {name: np.clip((a - vmin) / (vmax - vmin), 0, 1) for name, a in arrays.items()}
    titles = list(arrays)
    errors, error_note = {}, ""
    if error_ref is not None:
        ref = arrays[error_ref] if isinstance(error_ref, str) else _to_numpy(error_ref)
        errors = {name: np.abs(a - ref) for name, a in arrays.items() if a is not ref and name != error_ref}
        top = error_vmax or max(float(e.max()) for e in errors.values()) or 1.0
        errors = {name: np.clip(e / top, 0, 1) for name, e in errors.items()}       # grey: black 0, white error_vmax
        ref_name = error_ref if isinstance(error_ref, str) else "ref"
        error_note = f"second row: the error |x - {ref_name}| under each volume x (black 0, white {top:.2g} or more)"

    z_stretch = _z_stretch(shape, z_stretch)
    mosaic_width = len(titles) * (max(shape[1:]) + 2) - 2           # px, before scaling (2 px gaps)
    scale = min(scale, (TEXT_WIDTH - 8) / mosaic_width)             # no sideways scroll (8 px: the widgets' margins)

    def panels(axis, i):
        take = lambda v: np.take(v, i, axis=axis)
        flip = (lambda im: np.repeat(im[::-1], z_stretch, 0)) if axis else (lambda im: im)   # z up, stretched
        top_row = [flip(take(g)) for g in gray.values()]
        if not errors:
            return [top_row]
        return [top_row, [flip(take(errors[name])) if name in errors else None for name in gray]]

    pages = []
    for axis, view in enumerate(PLANES):
        index = list(range(0, shape[axis], step))
        pngs = [_mosaic_png(panels(axis, i)) for i in index]
        stack = widgets.Stack([widgets.Image(value=png, format="png", width=str(int(w * scale))) for png, w in pngs],
                              selected_index=len(index) // 2)
        slider = widgets.IntSlider(value=len(index) // 2, min=0, max=len(index) - 1, description=f"{view} slice",
                                   readout=False, style={"description_width": "initial"})
        where = widgets.Dropdown(options=[(f"{'zyx'[axis]} = {i}", k) for k, i in enumerate(index)],
                                 value=len(index) // 2)
        where.layout.width = "max-content"
        widgets.jslink((slider, "value"), (stack, "selected_index"))
        widgets.jslink((slider, "value"), (where, "index"))
        pages.append(widgets.VBox([widgets.HBox([slider, where]), stack]))
    axes = widgets.ToggleButtons(options=list(PLANES), value=PLANES[0], description="axis")
    views = widgets.Stack(pages, selected_index=0)
    widgets.jslink((axes, "index"), (views, "selected_index"))
    width = (max(shape[1:]) + 2) * scale                           # a panel and its gap, as in the mosaic
    names = widgets.HBox([widgets.HTML(f"<div style='width:{width:.0f}px;font-size:11px;text-align:center'>{t}</div>",
                                       layout=widgets.Layout(margin="0")) for t in titles])
    notes = ([f"coronal and sagittal views: z stretched x{z_stretch}"] if z_stretch > 1 else []) + \
        ([error_note] if errors else [])
    note = [widgets.HTML(f"<small>{'; '.join(notes)}</small>")] if notes else []
    return widgets.VBox([axes, *note, names, views])
