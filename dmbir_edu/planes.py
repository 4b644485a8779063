"""The three planes of a volume and the views that turn one into a stack of 2D slices.

Volumes are (D, H, W), axial slices first: z (depth, D slices) is the first axis, then y (H rows),
then x (W columns). An axial slice has fixed z, a coronal one fixed y, a sagittal one fixed x.
A 2D prior sees stacks of slices of one plane; the metrics and the figures report every plane.

Explained in: chapter "From 2D to 3D" (book/05_diffusionmbir.ipynb).
"""

PLANES = ("axial", "coronal", "sagittal")      # in the order of the axes they fix: z, y, x


def check_plane(plane):
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def to_plane(vol, plane="axial"):
    """The volume (D, H, W) seen as a stack of ``plane`` slices: axial (D, H, W) as is, coronal
    (H, D, W) (slices at fixed y), sagittal (W, D, H) (slices at fixed x). A view, no copy;
    ``from_plane`` undoes it. What a prior trained on that plane (``train --plane``) sees."""
    check_plane(plane)
    return {"axial": vol, "coronal": vol.transpose(-3, -2), "sagittal": vol.movedim(-1, -3)}[plane]


def from_plane(slices, plane="axial"):
    """Inverse of ``to_plane``: a stack of ``plane`` slices back to the (D, H, W) volume."""
    check_plane(plane)
    return {"axial": slices, "coronal": slices.transpose(-3, -2), "sagittal": slices.movedim(-3, -1)}[plane]
