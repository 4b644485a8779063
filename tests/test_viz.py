"""Tests for dmbir_edu.viz: figure layout and the kernel-free slider's wiring."""

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dmbir_edu.viz import live_slider, orthoviews, sweep_widget  # noqa: E402


def ramp_volume(d=6, h=8, w=10):
    """A volume whose value encodes the voxel position, so slices are recognisable."""
    z, y, x = torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w), indexing="ij")
    return (100 * z + 10 * y + x).float() / 1000


def test_orthoviews_has_one_row_per_volume_and_three_views():
    vol = ramp_volume()
    fig = orthoviews({"truth": vol, "recon": vol + 0.1})
    axes = fig.get_axes()
    assert len(axes) == 6
    titles = [ax.get_title() for ax in axes]
    assert titles[0] == "axial\nz = 3" and titles[1] == "coronal\ny = 4" and titles[2] == "sagittal\nx = 5"
    assert titles[3:] == ["", "", ""]                       # column titles only on the top row
    assert axes[0].get_ylabel() == "truth" and axes[3].get_ylabel() == "recon"
    plt.close(fig)


def test_orthoviews_slices_and_orientation():
    vol = ramp_volume()
    fig = orthoviews({"v": vol}, index=(1, 2, 3))
    axial, coronal, sagittal = (ax.get_images()[0] for ax in fig.get_axes())
    np.testing.assert_allclose(axial.get_array(), vol[1].numpy())
    np.testing.assert_allclose(coronal.get_array(), vol[:, 2, :].numpy())
    np.testing.assert_allclose(sagittal.get_array(), vol[:, :, 3].numpy())
    assert axial.origin == "upper"
    assert coronal.origin == "lower" and sagittal.origin == "lower"  # z points up
    plt.close(fig)


def test_orthoviews_error_maps():
    vol = ramp_volume()
    fig = orthoviews({"truth": vol, "recon": vol + 0.25}, error_ref="truth", error_vmax=0.5)
    axes = fig.get_axes()
    assert len(axes) == 13  # 2 rows x (3 views + 3 error maps), and the error maps' colour bar
    np.testing.assert_allclose(axes[9].get_images()[0].get_array(), 0.25, atol=1e-6)
    np.testing.assert_allclose(axes[3].get_images()[0].get_array(), 0.0)
    bar = axes[12]
    assert "error" in bar.get_ylabel() and bar.get_ylim() == (0.0, 0.5)   # the scale every error map shares
    assert fig.get_size_inches()[0] <= 676 / 72       # fits the book's 676 px text column at 72 px per inch
    plt.close(fig)


def test_orthoviews_stretches_thin_slabs_along_z_and_says_so():
    thin, cube = ramp_volume(d=2, h=16, w=16), ramp_volume(d=16, h=16, w=16)
    axes = orthoviews({"v": thin}).get_axes()
    assert axes[1].get_aspect() == 4 and "z x4" in axes[1].get_title() and axes[0].get_aspect() == 1
    axes = orthoviews({"v": cube}).get_axes()
    assert axes[1].get_aspect() == 1 and "x" not in axes[1].get_title().split("=")[0].replace("coronal", "")
    plt.close("all")


def test_orthoviews_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        orthoviews({"a": ramp_volume(), "b": ramp_volume(d=4)})
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        orthoviews({"a": torch.zeros(8, 8)})
    with pytest.raises(ValueError, match="index"):
        orthoviews({"a": ramp_volume()}, index=(99, 0, 0))


def figure_of(value):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.imshow(np.full((4, 4), value), vmin=0, vmax=1, cmap="gray")
    return fig


def parts(box):
    (controls, stack) = box.children
    slider, shown = controls.children
    return slider, shown, stack


def saved_links():
    """The jslink models as they are saved in a notebook's widget state.

    ``get_manager_state`` is what nbclient saves into the notebook's
    metadata; the page reads it without a kernel: each one is ``(source, target)``
    with ``"IPY_MODEL_<id>"`` references and trait names.
    """
    state = widgets.Widget.get_manager_state(drop_defaults=False)["state"]
    return [
        (tuple(m["state"]["source"]), tuple(m["state"]["target"]))
        for m in state.values()
        if m["model_name"] == "LinkModel"
    ]


def ref(widget):
    return "IPY_MODEL_" + widget.model_id


def test_sweep_widget_stack_and_links():
    box = sweep_widget([figure_of(v) for v in (0.0, 0.5, 1.0)], ["a", "b", "c"], "lam")
    slider, shown, stack = parts(box)
    assert isinstance(box, widgets.VBox)
    assert isinstance(slider, widgets.IntSlider) and isinstance(stack, widgets.Stack)
    assert len(stack.children) == 3 and all(isinstance(c, widgets.Image) for c in stack.children)
    assert (slider.min, slider.max, slider.description) == (0, 2, "lam")
    assert stack.selected_index == slider.value == 0
    assert [label for label, _ in shown.options] == ["a", "b", "c"]

    links = saved_links()
    assert ((ref(slider), "value"), (ref(stack), "selected_index")) in links
    assert ((ref(slider), "value"), (ref(shown), "index")) in links


def test_sweep_widget_pngs_differ_and_figures_are_closed():
    figs = [figure_of(0.0), figure_of(1.0)]
    box = sweep_widget(figs)
    _, shown, stack = parts(box)
    first, second = (bytes(child.value) for child in stack.children)
    assert first.startswith(b"\x89PNG") and second.startswith(b"\x89PNG")
    assert first != second
    assert [label for label, _ in shown.options] == ["0", "1"]
    assert not any(plt.fignum_exists(f.number) for f in figs)


def test_sweep_widget_accepts_png_bytes_and_checks_labels():
    png = sweep_widget([figure_of(0.3)]).children[1].children[0].value
    box = sweep_widget([png, png])
    assert len(box.children[1].children) == 2
    with pytest.raises(ValueError, match="labels"):
        sweep_widget([png, png], labels=["only one"])
    with pytest.raises(ValueError, match="PNG"):
        sweep_widget([b"not a png"])


def test_live_slider_calls_fn_when_run_is_pressed():
    """Nothing runs when the widget is made (a notebook executed without a frontend must not run
    a long callback inside an output widget); the Run button calls ``fn`` with the sliders' values."""
    seen = []
    w = live_slider(lambda lam: seen.append(lam), lam=(0.0, 1.0, 0.5))
    assert isinstance(w, widgets.interactive) and seen == []
    w.children[0].value = 1.0
    assert seen == []
    w.manual_button.click()
    assert seen == [1.0]


def test_volume_viewer_precomputes_every_slice_of_every_axis():
    """One PNG per slice position and axis (every ``step``-th), its panels the slices of each volume
    and error map, z up in coronal / sagittal; each axis's slider is linked in the browser to its
    pictures, and the axis buttons to the pages (jslink: no kernel needed)."""
    import io

    import numpy as np
    from PIL import Image

    from dmbir_edu import viz

    x = np.zeros((6, 8, 10), dtype=np.float32)
    x[1, 2, 3] = 1.0                                             # one bright voxel at (z, y, x) = (1, 2, 3)
    w = viz.volume_viewer({"a": x, "b": 0.5 * x}, error_ref="a", step=1, scale=2)
    axes, note, names, views = w.children
    assert axes.options == ("axial", "coronal", "sagittal") and len(names.children) == 2   # a, b
    assert "|x - a|" in note.value                              # the error row is explained above the panels
    for axis, (n, (h, wd), bright, pixel) in enumerate([(6, (8, 10), 1, (2, 3)), (8, (6, 10), 2, (6 - 1 - 1, 3)),
                                                        (10, (6, 8), 3, (6 - 1 - 1, 2))]):
        stack = views.children[axis].children[1]
        assert len(stack.children) == n
        pics = [np.asarray(Image.open(io.BytesIO(im.value))) for im in stack.children]
        assert all(p.shape == (2 * h + 2, 2 * wd + 2) for p in pics)        # 2 x 2 panels, gaps of 2 px
        assert [k for k, p in enumerate(pics) if p[:h, :wd].max() > 0] == [bright]   # on its own slice only
        a, b = pics[bright][:h, :wd], pics[bright][:h, wd + 2:]
        blank, err = pics[bright][h + 2:, :wd], pics[bright][h + 2:, wd + 2:]   # under a (the reference): nothing
        assert a[pixel] == 255 and b[pixel] == 128 and err[pixel] == 255      # b = a / 2; error 0.5 = the largest
        assert a.sum() == 255 and (blank == 255).all()                       # one lit pixel, z up (row D - 1 - z)
    links = saved_links()
    assert ((ref(axes), "index"), (ref(views), "selected_index")) in links
    for page in views.children:
        controls, stack = page.children
        slider = controls.children[0]
        assert ((ref(slider), "value"), (ref(stack), "selected_index")) in links


def test_volume_viewer_stretches_thin_slabs_along_z_and_says_so():
    import io

    import numpy as np
    from PIL import Image

    from dmbir_edu import viz

    x = np.zeros((2, 8, 8), dtype=np.float32)
    x[0, 3, 4] = 1.0
    axes, note, names, views = viz.volume_viewer({"a": x}, scale=1).children   # z stretched 8 / (2 * 2) = 2
    assert "x2" in note.value
    coronal = np.asarray(Image.open(io.BytesIO(views.children[1].children[1].children[3].value)))
    assert coronal.shape == (4, 8) and list(coronal[:, 4]) == [0, 0, 255, 255]   # z = 0 at the bottom, 2 rows


def test_pictures_fit_the_text_column():
    """fit_width keeps a figure's aspect and caps its width; volume_viewer enlarges its panels less
    where eight 64-wide volumes at the asked scale would be wider than the text column."""
    import numpy as np

    from dmbir_edu import viz

    assert viz.fit_width(18, 4) == (viz.MAX_INCHES, 2.0) and viz.fit_width(6, 4) == (6, 4)
    x = np.zeros((4, 64, 64), dtype=np.float32)
    w = viz.volume_viewer({str(k): x for k in range(8)}, scale=3)
    widths = [int(im.width) for page in w.children[-1].children for im in page.children[1].children]
    assert max(widths) <= viz.TEXT_WIDTH and min(widths) > viz.TEXT_WIDTH - 20     # shrunk to the column, no more
    small = viz.volume_viewer({"a": x}, scale=3)
    assert {int(im.width) for im in small.children[-1].children[0].children[1].children} == {3 * 64}   # as asked
