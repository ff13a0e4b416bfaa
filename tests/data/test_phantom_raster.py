"""Shapes and rasteriser of the phantom: partial volume, sparse capsule sets, slabs, regions, modes."""

from __future__ import annotations

import numpy as np
import pytest

from ctvl.data.phantom import csg, sdf
from ctvl.data.phantom.raster import Region, Scene, grid_affine, rasterise, supersampling


def _world(shape, spacing, center=(0.0, 0.0, 0.0)):
    aff = grid_affine(shape, spacing, center)
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return [aff[d, 0] * i + aff[d, 1] * j + aff[d, 2] * k + aff[d, 3] for d in range(3)]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 4.0), (3.0, 3.0, 3.0)])
def test_partial_volume_preserves_sphere_volume(spacing):
    scene = Scene()
    scene.add(sdf.Ellipsoid(center=[1.3, -0.7, 2.1], radii=[12.0, 12.0, 12.0]), 1.0)
    shape = tuple(int(64 / s) for s in spacing)
    vol, _ = rasterise(scene, shape, spacing, background=0.0)
    assert vol.sum() * np.prod(spacing) == pytest.approx(4 / 3 * np.pi * 12.0**3, rel=0.03)


def test_signed_distances_are_right_near_surfaces():
    x, y, z = (np.array([v]) for v in (10.0, 0.0, 0.0))
    assert sdf.Ellipsoid(center=[0, 0, 0], radii=[8.0, 8.0, 8.0]).sdf(x, y, z, 1.0)[0] == pytest.approx(2.0)
    assert sdf.Capsule(a=[0, -5, 0], b=[0, 5, 0], r0=3.0).sdf(x, y, z, 1.0)[0] == pytest.approx(7.0)
    assert sdf.Torus(center=[0, 0, 0], major=10.0, minor=1.0).sdf(x, y, z, 1.0)[0] == pytest.approx(-1.0)
    assert sdf.Box(center=[0, 0, 0], half=[5.0, 5.0, 5.0]).sdf(x, y, z, 1.0)[0] == pytest.approx(5.0)
    assert sdf.HalfSpace(normal=[1, 0, 0], offset=4.0).sdf(x, y, z, 1.0)[0] == pytest.approx(6.0)
    walls = csg.VoronoiWalls(seeds=np.array([[0.0, 0, 0], [20.0, 0, 0]]), width=2.0)
    assert walls.sdf(x, y, z, 1.0)[0] == pytest.approx(-1.0)  # on the bisector, inside a 2 mm wall
    assert sdf.Ellipsoid(center=[0, 0, 0], radii=[0.5, 0.5, 0.5], bloom=0.5).sdf(x / 10, y, z, 4.0)[0] == pytest.approx(
        -1.0
    )  # 2 mm min radius


def test_capsule_set_matches_single_capsules():
    rng = np.random.default_rng(0)
    centres = np.stack(np.meshgrid([-24.0, 0.0, 24.0], [-24.0, 0.0, 24.0], [-12.0, 12.0], indexing="ij"), -1).reshape(
        -1, 3
    )
    a = centres + rng.uniform(-6, 6, centres.shape)  # separate short capsules: no overlaps
    b = centres + rng.uniform(-6, 6, centres.shape)
    r = rng.uniform(0.5, 3.0, len(centres))
    single, group = Scene(), Scene()
    for i in range(len(centres)):
        single.add(sdf.Capsule(a=a[i], b=b[i], r0=r[i]), 100.0, mode="max")
    group.add(sdf.CapsuleSet(a=a, b=b, r0=r), 100.0, mode="max")
    v1, _ = rasterise(single, (40, 40, 40), (2.0, 2.0, 2.0), background=0.0)
    v2, _ = rasterise(group, (40, 40, 40), (2.0, 2.0, 2.0), background=0.0)
    np.testing.assert_allclose(v1, v2, atol=1e-3)
    assert v2.max() == pytest.approx(100.0)


def test_slab_chunking_and_supersampling_do_not_change_the_result():
    scene = Scene()
    scene.regions["ball"] = Region(sdf.Ellipsoid(center=[0, 0, 0], radii=[20.0, 15.0, 25.0]))
    scene.add("ball", 50.0, tag="ball")
    scene.add(sdf.CapsuleSet(a=[[0, 0, -30.0]], b=[[0, 0, 30.0]], r0=[3.0]), -500.0, within=("ball",), tag="tube")
    one, m1 = rasterise(scene, (32, 32, 20), (2.5, 2.5, 4.0), with_masks=True)
    many, m2 = rasterise(scene, (32, 32, 20), (2.5, 2.5, 4.0), with_masks=True, max_chunk_voxels=1)
    np.testing.assert_allclose(one, many, atol=1e-4)
    np.testing.assert_allclose(m1["tube"], m2["tube"], atol=1e-5)
    assert supersampling((2.5, 2.5, 4.0)) == 2 and supersampling((0.75, 0.75, 0.75)) == 1
    # the tube is only drawn inside the ball: nothing below -1000 + ... outside it
    x, y, z = _world((32, 32, 20), (2.5, 2.5, 4.0))
    assert one[np.abs(z) > 35].max() == pytest.approx(-1000.0)


def test_modes_and_visible_masks():
    scene = Scene()
    box = sdf.Box(center=[0, 0, 0], half=[30.0, 30.0, 30.0])
    scene.add(box, -850.0, tag="lung")
    scene.add(
        sdf.Ellipsoid(center=[0, 0, 0], radii=[10.0, 10.0, 10.0]), -900.0, mode="max", tag="maxed"
    )  # cannot lower
    scene.add(sdf.Ellipsoid(center=[15, 0, 0], radii=[6.0, 6.0, 6.0]), -990.0, mode="min", tag="hole")
    scene.add(sdf.Ellipsoid(center=[-15, 0, 0], radii=[6.0, 6.0, 6.0]), 40.0, tag="nodule")
    scene.add(box, 5.0, mode="add")
    vol, masks = rasterise(scene, (40, 40, 40), (2.0, 2.0, 2.0), with_masks=True)
    x, y, z = _world((40, 40, 40), (2.0, 2.0, 2.0))
    at = lambda px: vol[np.argmin(np.abs(x[:, 0, 0] - px)), 20, 20]  # noqa: E731
    assert at(0.0) == pytest.approx(-845.0, abs=1.0)
    assert at(15.0) == pytest.approx(-985.0, abs=1.0) and at(-15.0) == pytest.approx(45.0, abs=1.0)
    assert masks["nodule"].max() == 1.0 and masks["lung"][masks["nodule"] == 1.0].max() == 0.0  # covered


def test_grid_affine_is_lps_and_centred():
    aff = grid_affine((4, 6, 8), (1.5, 2.0, 3.0), center=(10.0, -5.0, 2.0))
    assert np.allclose(aff @ np.array([1.5, 2.5, 3.5, 1.0]), [10.0, -5.0, 2.0, 1.0])
    assert aff[0, 0] < 0 and aff[1, 1] < 0 and aff[2, 2] > 0
