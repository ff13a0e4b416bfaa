"""Windowing math, canonical orientation, display conventions and aspect ratio of the viewer planes."""

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

from ctvl.errors import InputError
from ctvl.io import Volume
from ctvl.viewer.planes import (
    PLANES,
    WINDOW_PRESETS,
    ScanView,
    apply_window,
    middle_slices,
    preset_for,
    render_plane,
    window_preset,
)


def test_presets_are_the_usual_ct_windows():
    assert window_preset("lung") == (-600.0, 1500.0)
    assert window_preset("mediastinum") == (50.0, 350.0)
    assert window_preset("bone") == (400.0, 1800.0)
    assert preset_for(-600, 1500) == "lung" and preset_for(-600, 1490) == "custom"
    with pytest.raises(InputError, match="unknown window preset 'brain'"):
        window_preset("brain")


@pytest.mark.parametrize("name", list(WINDOW_PRESETS))
def test_window_maps_edges_and_centre(name):
    level, width = WINDOW_PRESETS[name]
    hu = np.array([level - width, level - width / 2, level, level + width / 4, level + width / 2, 3000 + width])
    assert apply_window(hu, level, width).tolist() == [0, 0, 128, 191, 255, 255]  # 127.5 → 128, 191.25 → 191


def test_window_is_linear_monotone_and_handles_nan():
    hu = np.linspace(-1200, 1200, 2401, dtype=np.float32)
    out = apply_window(hu, 0, 2000)
    assert out.dtype == np.uint8 and np.all(np.diff(out.astype(int)) >= 0)
    assert out[hu <= -1000].max() == 0 and out[hu >= 1000].min() == 255
    np.testing.assert_allclose(
        out[(hu > -1000) & (hu < 1000)], (hu[(hu > -1000) & (hu < 1000)] + 1000) * 255 / 2000, atol=0.5
    )
    assert apply_window(np.array([np.nan]), 0, 100).tolist() == [0]
    for bad in (0, -5, np.nan):
        with pytest.raises(InputError, match="window width"):
            apply_window(hu, 0, bad)


def _ras_marked(shape=(7, 9, 5)):
    """Canonical (X, Y, Z) array with distinct values and two corner markers."""
    ras = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 500.0
    ras[-1, -1, -1] = 3000  # patient's right, anterior, superior corner
    ras[0, 0, 0] = -3000  # left, posterior, inferior corner
    return ras


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAS", "RPI", "SRA", "PIL"])
def test_any_stored_orientation_gives_the_same_canonical_grid(codes):
    ras, spacing = _ras_marked(), (0.7, 0.8, 2.5)
    tx = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes)))
    stored = nib.orientations.apply_orientation(ras, tx)
    affine = np.diag([*spacing, 1.0]) @ inv_ornt_aff(tx, ras.shape)  # stored voxel → RAS mm
    volume = Volume(stored.copy(), affine)
    assert volume.axcodes == codes
    view = ScanView.from_volume(volume)
    np.testing.assert_array_equal(view.data, ras.astype(np.int16))
    assert view.spacing == pytest.approx(spacing)
    assert view.stored_shape == stored.shape
    # stored voxel → slider positions: the RAS corner marker is found on every plane
    ijk = tuple(int(v) for v in np.argwhere(stored == 3000)[0])
    assert view.stored_to_slices(ijk) == {"axial": 4, "coronal": 8, "sagittal": 6}
    with pytest.raises(InputError, match="outside the scan's grid"):
        view.stored_to_slices(tuple(n for n in stored.shape))


def test_display_conventions_radiological_axial_superior_up():
    view = ScanView.from_volume(Volume(_ras_marked(), np.diag([1.0, 1.0, 1.0, 1.0])))
    x, y, z = view.shape
    # right-anterior-superior corner: top-left in all three (axial: R on image left, A up;
    # coronal: R on image left, S up; sagittal: A on image left, S up)
    for plane, k in (("axial", z - 1), ("coronal", y - 1), ("sagittal", x - 1)):
        assert view.plane(plane, k)[0, 0] == 3000, plane
    # left-posterior-inferior corner: bottom-right
    for plane in PLANES:
        assert view.plane(plane, 0)[-1, -1] == -3000, plane
    assert view.plane("axial", 0).shape == (y, x)
    assert view.plane("coronal", 0).shape == (z, x)
    assert view.plane("sagittal", 0).shape == (z, y)
    assert middle_slices(view) == {"axial": z // 2, "coronal": y // 2, "sagittal": x // 2}
    with pytest.raises(InputError, match="axial slice 5 is outside 0..4"):
        view.plane("axial", 5)
    with pytest.raises(InputError, match="unknown plane"):
        view.plane("oblique", 0)


def _centroid(view, plane, mask_value=1000):
    stack = np.stack([view.plane(plane, k) for k in range(view.n_slices(plane))]) >= mask_value
    rows, cols = np.nonzero(stack.any(axis=0))
    h, w = stack.shape[1:]
    return rows.mean() / h, cols.mean() / w  # fractions of the image: 0 = top / left


def test_phantom_anatomy_lands_where_a_radiologist_expects():
    from ctvl.data.phantom import render_case

    case = render_case(0, with_masks=True, noise=False)
    assert case.volume.axcodes == "LPS"

    def view_of(organ):
        return ScanView.from_volume(Volume(case.masks[organ] * 2000.0, case.volume.affine))

    assert _centroid(view_of("heart"), "axial")[1] > 0.5  # patient's left is on the image's right
    assert _centroid(view_of("lung_R"), "axial")[1] < 0.5
    assert _centroid(view_of("lung_R"), "coronal")[1] < 0.5
    assert _centroid(view_of("sternum"), "axial")[0] < 0.4  # anterior at the top
    assert _centroid(view_of("table"), "axial")[0] > 0.7  # the table is behind the patient
    assert _centroid(view_of("thyroid"), "coronal")[0] < 0.2  # superior at the top
    assert _centroid(view_of("liver"), "coronal")[0] > 0.7
    assert _centroid(view_of("sternum"), "sagittal")[1] < 0.4  # anterior on the image's left
    assert _centroid(view_of("table"), "sagittal")[1] > 0.7
    assert _centroid(view_of("thyroid"), "sagittal")[0] < 0.2


def test_aspect_ratio_follows_spacing_and_one_scale_for_all_planes():
    view = ScanView.from_volume(Volume(np.zeros((10, 20, 5), np.float32), np.diag([1.0, 1.0, 3.0, 1.0])))
    # physical extents: x 10 mm, y 20 mm, z 15 mm; 40 px for the longest (y) → 2 px per mm
    assert view.display_shape("axial", 40) == (40, 20)
    assert view.display_shape("coronal", 40) == (30, 20)
    assert view.display_shape("sagittal", 40) == (30, 40)
    assert view.pixel_spacing("sagittal") == (3.0, 1.0)
    img = render_plane(view, "coronal", 3, 50, 350, size=40)
    assert img.dtype == np.uint8 and img.shape == (30, 20)


def test_render_plane_windows_then_resizes():
    data = np.full((4, 4, 2), -1000.0, np.float32)
    data[:2] = 1000.0  # x = 0, 1: the patient's left half (RAS: x grows towards the right)
    view = ScanView.from_volume(Volume(data, np.diag([2.0, 2.0, 4.0, 1.0])))
    img = render_plane(view, "axial", 0, 0, 2000, size=16)  # 8 mm extent on 16 px
    assert img.shape == (16, 16)
    assert img[:, :6].max() == 0 and img[:, -6:].min() == 255  # left (x=0,1) shown on the image's right
    assert render_plane(view, "axial", 0, 0, 2000, size=8).shape == (8, 8)  # 1:1, no resize
