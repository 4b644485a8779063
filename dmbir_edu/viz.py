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

VIEWS = ("axial", "coronal", "sagittal")


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


def orthoviews(volumes, index=None, vmin=0.0, vmax=1.0, error_ref=None, error_vmax=None):
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

    Returns
    -------
    matplotlib.figure.Figure
        A figure with ``len(volumes)`` rows and 3 columns (6 with
        ``error_ref``). Coronal and sagittal slices are drawn with z pointing
        up.

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

    n_cols = 3 if errors is None else 6
    fig, axes = plt.subplots(
        len(arrays), n_cols, figsize=(2.2 * n_cols, 2.3 * len(arrays)), squeeze=False
    )
    z, y, x = index
    where = {"axial": f"z={z}", "coronal": f"y={y}", "sagittal": f"x={x}"}
    for row, (name, array) in zip(axes, arrays.items()):
        for ax, view, image in zip(row, VIEWS, _slices(array, index)):
            origin = "upper" if view == "axial" else "lower"
            ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, origin=origin)
            ax.set_title(f"{name}: {view} ({where[view]})", fontsize=8)
        if errors is not None:
            for ax, view, image in zip(row[3:], VIEWS, _slices(errors[name], index)):
                origin = "upper" if view == "axial" else "lower"
                ax.imshow(image, cmap="inferno", vmin=0.0, vmax=error_vmax, origin=origin)
                ax.set_title(f"|{name} - ref|: {view}", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
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

    stack = widgets.Stack([widgets.Image(value=png, format="png") for png in pngs], selected_index=0)
    slider = widgets.IntSlider(
        value=0, min=0, max=len(pngs) - 1, description=description, readout=False
    )
    shown = widgets.Dropdown(options=list(zip(labels, range(len(pngs)))), value=0)
    shown.layout.width = "max-content"
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    widgets.jslink((slider, "value"), (shown, "index"))
    return widgets.VBox([widgets.HBox([slider, shown]), stack])


def live_slider(fn, **ranges):
    """Sliders that call ``fn`` again on every move (needs a running kernel).

    A thin wrapper over ``ipywidgets.interactive`` (the widget behind
    ``ipywidgets.interact``), e.g. ``live_slider(show, lam=(0.0, 1.0, 0.05))``.
    In the static online book the sliders move but nothing is recomputed:
    use :func:`sweep_widget` there, and the Colab button to run this.

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
    return widgets.interactive(fn, **ranges)
