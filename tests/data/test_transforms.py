"""PreprocessSpec: presets, serialisation, shapes, orientation, depth rule and the inverse round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctvl.data.transforms import PreprocessSpec, PreprocessState
from ctvl.errors import ConfigError, InputError
from ctvl.io.volume import Volume, VolumeMeta


def _grid_world(shape, affine):
    """World (RAS mm) coordinates of every voxel centre: (I, J, K, 3)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _smooth_volume(shape=(50, 44, 30), spacing=(2.0, 2.2, 3.0)) -> Volume:
    """A smooth HU field (well inside the window) centred on the world origin, RAS-stored."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(shape, spacing)]
    w = _grid_world(shape, affine)
    data = 500 * np.sin(w[..., 0] / 25) * np.cos(w[..., 1] / 30) + 300 * np.sin(w[..., 2] / 20) - 100
    return Volume(data.astype(np.float32), affine, VolumeMeta(source="synthetic"))


def _reoriented(volume: Volume, codes: str) -> Volume:
    """The same anatomy stored with another voxel order (``codes``), exact (flips/permutes only)."""
    import nibabel as nib

    o = nib.orientations
    ornt = o.ornt_transform(o.io_orientation(volume.affine), o.axcodes2ornt(tuple(codes)))
    data = nib.orientations.apply_orientation(volume.data, ornt)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape)
    vol = Volume(np.ascontiguousarray(data), affine)
    assert vol.axcodes == codes
    return vol


def test_paper_preset_values():
    spec = PreprocessSpec.paper()
    assert spec.spacing == (0.75, 0.75, 1.5)
    assert spec.window == (-1000.0, 1000.0) and spec.out_range == (-1.0, 1.0)
    assert spec.size == (512, 512) and spec.depth == 241 and spec.pad_value == -1.0
    assert (spec.depth - 1) % spec.depth_multiple == 0 and spec.orientation == "LPS"
    assert spec.version >= 1


def test_cpu_preset_values():
    spec = PreprocessSpec.cpu()
    assert spec.size == (64, 64) and spec.depth == 33
    assert spec.spacing == (5.625, 5.625, 11.25)
    assert spec.window == PreprocessSpec.paper().window and spec.out_range == PreprocessSpec.paper().out_range
    # the field of view covers a chest: > 350 mm in every direction
    assert spec.size[1] * spec.spacing[0] > 350 and spec.depth * spec.spacing[2] > 350


@pytest.mark.parametrize(
    "spec", [PreprocessSpec.paper(), PreprocessSpec.cpu(), PreprocessSpec(orientation="ras", depth=None, size=(32, 48))]
)
def test_dict_and_json_round_trip(spec):
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON types
    assert PreprocessSpec.from_dict(d) == spec
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    assert PreprocessSpec.from_json(spec.to_json()).hash() == spec.hash()


def test_hash_changes_with_any_field():
    base = PreprocessSpec.cpu()
    other_pad = PreprocessSpec(**{**base.__dict__, "pad_value": -0.5})
    assert len({base.hash(), PreprocessSpec.paper().hash(), other_pad.hash()}) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 240},
        {"orientation": "LLS"},
        {"orientation": "LP"},
        {"window": (1000, -1000)},
        {"spacing": (1, 0, 1)},
        {"size": (0, 64)},
        {"interpolation": "cubic"},
        {"version": 99},
    ],
)
def test_invalid_spec_is_config_error(kwargs):
    with pytest.raises(ConfigError):
        PreprocessSpec(**kwargs)


def test_from_dict_rejects_unknown_keys_and_bad_json():
    with pytest.raises(ConfigError, match="unknown"):
        PreprocessSpec.from_dict({**PreprocessSpec.cpu().to_dict(), "voxel": 1})
    with pytest.raises(ConfigError):
        PreprocessSpec.from_json("{not json")


# (input shape, input spacing, stored orientation)
SHAPE_CASES = [
    ((50, 44, 30), (2.0, 2.2, 3.0), "RAS"),
    ((64, 64, 90), (1.0, 1.0, 1.0), "LPS"),
    ((40, 60, 12), (3.0, 2.0, 5.0), "LPI"),
    ((30, 40, 50), (2.5, 2.5, 2.5), "ASL"),  # sagittal-style storage
    ((32, 32, 1), (1.5, 1.5, 2.0), "RAS"),  # a single slice
]


@pytest.mark.parametrize("shape,spacing,codes", SHAPE_CASES)
def test_fixed_depth_shape(shape, spacing, codes):
    spec = PreprocessSpec(spacing=(4.0, 4.0, 6.0), size=(24, 32), depth=17)
    x = spec.apply(_reoriented(_smooth_volume(shape, spacing), codes))
    assert x.shape == (1, 17, 24, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("shape,spacing,codes", SHAPE_CASES)
def test_any_depth_is_padded_to_next_1_plus_8k_at_the_end(shape, spacing, codes):
    spec = PreprocessSpec(spacing=(4.0, 4.0, 3.0), size=(24, 24), depth=None)
    vol = _reoriented(_smooth_volume(shape, spacing), codes)
    x, state = spec.apply_with_state(vol)
    t = x.shape[1]
    assert (t - 1) % 8 == 0 and 0 <= state.depth_pad_end < 8 and x.shape == state.model_shape
    if state.depth_pad_end:
        assert torch.all(x[0, t - state.depth_pad_end :] == spec.pad_value)  # padding only at the end
    assert torch.any(x[0, t - state.depth_pad_end - 1] != spec.pad_value)
    back = spec.invert(x, state)
    assert back.shape == vol.shape and np.array_equal(back.affine, vol.affine)


@pytest.mark.parametrize(
    "slices,expected_t,expected_pad", [(30, 33, 3), (33, 33, 0), (34, 41, 7), (1, 1, 0), (2, 9, 7)]
)
def test_depth_rule_pad_amount_is_recorded_and_cropped_back(slices, expected_t, expected_pad):
    spec = PreprocessSpec(spacing=(2.0, 2.0, 3.0), size=(16, 16), depth=None)
    vol = _smooth_volume((16, 16, slices), (2.0, 2.0, 3.0))  # target spacing = input spacing: no resampling
    x, state = spec.apply_with_state(vol)
    assert x.shape == (1, expected_t, 16, 16) and state.depth_pad_end == expected_pad
    back = spec.invert(x, state)
    assert back.shape == vol.shape
    np.testing.assert_allclose(back.data, vol.data, atol=0.05)  # same grid: exact up to float rounding


@pytest.mark.parametrize("codes", ["LPS", "LAS", "RPI", "ASL", "SAR"])
def test_stored_orientation_does_not_change_the_model_tensor(codes):
    spec = PreprocessSpec(spacing=(2.0, 2.2, 3.0), size=(48, 56), depth=None)
    ref = spec.apply(_smooth_volume())  # RAS-stored
    other = spec.apply(_reoriented(_smooth_volume(), codes))
    assert other.shape == ref.shape
    torch.testing.assert_close(other, ref, atol=1e-4, rtol=0)


def test_model_axes_follow_the_documented_anatomy():
    """LPS spec: W → patient left, H → posterior, T → superior (slice 0 is the most inferior)."""
    vol = _smooth_volume((40, 40, 40), (2.0, 2.0, 2.0))
    w = _grid_world(vol.shape, vol.affine)
    target = np.array([20.0, 20.0, 20.0])  # RAS world: patient Right, Anterior, Superior
    vol.data = np.where(np.linalg.norm(w - target, axis=-1) < 6, 800.0, -800.0).astype(np.float32)
    spec = PreprocessSpec(spacing=(2.0, 2.0, 2.0), size=(40, 40), depth=41)
    for codes in ("RAS", "LPS", "PIL"):
        x = spec.apply(_reoriented(vol, codes))[0]  # (T, H, W)
        t, h, ww = np.unravel_index(int(torch.argmax(x)), x.shape)
        assert t > x.shape[0] // 2, "superior must be at high T"
        assert h < x.shape[1] // 2, "anterior must be at low H (top of the image)"
        assert ww < x.shape[2] // 2, "patient right must be at low W (image left, radiological view)"


def test_window_clips_and_scales():
    vol = _smooth_volume((20, 20, 9), (2.0, 2.0, 2.0))
    vol.data[:] = 0.0
    vol.data[:10] = 3000.0
    vol.data[10:15] = -3000.0
    spec = PreprocessSpec(spacing=(2.0, 2.0, 2.0), size=(20, 20), depth=9, interpolation="nearest")
    x = spec.apply(vol)[0]  # (T, H, W): W runs along the reversed RAS x axis for LPS
    assert set(np.unique(x.numpy()).round(4)) == {-1.0, 0.0, 1.0}


def test_fixed_depth_crops_and_pads_centrally():
    spec = PreprocessSpec(spacing=(2.0, 2.0, 2.0), size=(16, 16), depth=9)
    long = _smooth_volume((16, 16, 25), (2.0, 2.0, 2.0))
    long.data[:] = -500.0
    long.data[:, :, 12] = 500.0  # the central slice of 25 must be the central slice of 9
    x = spec.apply(long)[0]
    assert int(torch.argmax(x[:, 8, 8])) == 4
    short = _smooth_volume((16, 16, 5), (2.0, 2.0, 2.0))
    x = spec.apply(short)[0]
    assert torch.all(x[:2] == -1) and torch.all(x[-2:] == -1) and torch.all(x[2:7] > -1)


@pytest.mark.parametrize("codes", ["RAS", "LPS", "ASL"])
def test_inverse_round_trip_recovers_hu_shape_and_affine(codes):
    vol = _reoriented(_smooth_volume(), codes)
    spec = PreprocessSpec(spacing=(2.5, 2.5, 3.5), size=(48, 48), depth=None)
    x, state = spec.apply_with_state(vol)
    assert isinstance(state, PreprocessState)
    back = spec.invert(x, state)
    assert back.shape == vol.shape and back.data.dtype == np.float32
    assert np.array_equal(back.affine, vol.affine)
    err = np.abs(back.data - vol.data)[3:-3, 3:-3, 3:-3]  # resampling error grows only at the borders
    assert err.max() < 15.0 and np.median(err) < 3.0, (err.max(), np.median(err))
    again = spec.invert(x, vol)  # from the volume instead of the state: same result, state reusable
    np.testing.assert_allclose(again.data, back.data, atol=1e-3)
    np.testing.assert_allclose(spec.invert(x, state).data, back.data, atol=1e-3)


def test_inverse_fills_outside_the_field_of_view_with_air():
    vol = _smooth_volume((60, 60, 12), (2.0, 2.0, 3.0))
    spec = PreprocessSpec(spacing=(2.0, 2.0, 3.0), size=(30, 30), depth=9)  # crops every axis
    back = spec.invert(spec.apply(vol), vol)
    assert back.shape == vol.shape
    assert np.all(back.data[:10] == -1000.0) and np.all(back.data[:, :, 0] == -1000.0)
    np.testing.assert_allclose(back.data[25:35, 25:35, 4:8], vol.data[25:35, 25:35, 4:8], atol=1e-2)


def test_cpu_preset_on_a_paper_sized_grid_round_trips():
    vol = _smooth_volume((96, 96, 60), (3.75, 3.75, 6.0))  # 360 mm in-plane, 360 mm long
    spec = PreprocessSpec.cpu()
    x, state = spec.apply_with_state(vol)
    assert x.shape == (1, 33, 64, 64)
    err = np.abs(spec.invert(x, state).data - vol.data)[8:-8, 8:-8, 5:-5]
    assert np.median(err) < 15.0


def test_bad_inputs_are_one_line_errors():
    spec = PreprocessSpec(spacing=(2.0, 2.0, 2.0), size=(16, 16), depth=9)
    vol = _smooth_volume((16, 16, 9), (2.0, 2.0, 2.0))
    x, state = spec.apply_with_state(vol)
    with pytest.raises(InputError, match="shape"):
        spec.invert(x[:, :5], state)
    with pytest.raises(ConfigError):
        PreprocessSpec(spacing=(2.0, 2.0, 2.0), size=(16, 16), depth=17).invert(x, state)
    bad = _smooth_volume((16, 16, 9), (2.0, 2.0, 2.0))
    bad.data[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        spec.apply(bad)
    with pytest.raises(InputError, match="3D"):
        spec.apply(Volume(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)))


SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "volumes"


@pytest.mark.skipif(not (SHARED / "totalseg_abdomen_example_ct_sm.nii.gz").is_file(), reason="../shared/data absent")
def test_real_ct_round_trips_exactly_on_its_own_grid():
    """A real CT (TotalSegmentator example, 3 mm, RAS): same-spacing spec → only flips, pads and the window."""
    from ctvl.io import read_volume

    vol = read_volume(SHARED / "totalseg_abdomen_example_ct_sm.nii.gz")
    spec = PreprocessSpec(spacing=vol.spacing, size=(128, 128), depth=None)
    x, state = spec.apply_with_state(vol)
    assert x.shape == (1, 33, 128, 128) and state.depth_pad_end == 33 - vol.shape[2]
    back = spec.invert(x, state)
    assert np.array_equal(back.affine, vol.affine)
    np.testing.assert_allclose(back.data, np.clip(vol.data, -1000, 1000), atol=0.05)
    cpu = PreprocessSpec.cpu().apply(vol)
    assert cpu.shape == (1, 33, 64, 64) and float(cpu.min()) == -1.0


def test_to_volume_puts_a_model_tensor_on_the_specs_own_grid():
    """A tensor with no source scan (a generated one) comes back unchanged through apply()."""
    spec = PreprocessSpec(spacing=(12.0, 12.0, 22.5), size=(32, 32), depth=17, antialias=False)
    x = torch.rand(1, 17, 32, 32) * 2 - 1
    volume = spec.to_volume(x)
    assert volume.shape == (32, 32, 17) and volume.axcodes == "LPS"
    assert np.allclose(volume.spacing, spec.spacing)
    assert np.allclose(volume.affine[:3, :3] @ ((np.array(volume.shape) - 1) / 2) + volume.affine[:3, 3], 0)
    assert torch.allclose(spec.apply(volume), x, atol=1e-4)
