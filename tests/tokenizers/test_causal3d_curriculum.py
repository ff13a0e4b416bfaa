"""The curriculum's data: in-plane patches that prefer tissue, folders mixed by weight and role, shallow volumes
redrawn for excerpts, and the config errors of these keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctvl.data.phantom import write_dataset
from ctvl.errors import ConfigError
from ctvl.tokenizers.causal3d.curriculum import (
    VolumeMix,
    VolumeSource,
    check_data_keys,
    draw_sample,
    open_volumes,
    patch_crop,
    sample_generator,
    stage_plan,
)
from ctvl.tokenizers.causal3d.task import parse_spec


class Volumes:
    """A dataset of fixed tensors (1, T, H, W)."""

    def __init__(self, *volumes: torch.Tensor) -> None:
        self.volumes = volumes

    def __len__(self) -> int:
        return len(self.volumes)

    def image(self, i: int) -> torch.Tensor:
        return self.volumes[i]


def constant(value: float, t: int, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.full((1, t, h, w), float(value))


def test_patch_and_tissue_keys_parse_and_refuse() -> None:
    plan = stage_plan(1, {"patch": [8, 12], "min_tissue": 0.5}, 8)
    assert plan.patch == (8, 12) and plan.min_tissue == 0.5
    assert stage_plan(2, {"patch": 16}, 8).patch == (16, 16)
    assert stage_plan(1, {}, 8).patch is None
    for bad in ({"patch": [8]}, {"patch": [0, 8]}, {"patch": [8, 8], "min_tissue": 2}, {"min_tissue": 0.2}):
        with pytest.raises(ConfigError):
            stage_plan(1, bad, 8)
    check_data_keys({"root": "x", "mix": [], "patch": [8, 8], "min_tissue": 0.1, "weight": 1, "use": "both"})
    with pytest.raises(ConfigError, match="unknown data key"):
        check_data_keys({"patches": [8, 8]})


def test_patch_crop_prefers_tissue() -> None:
    x = torch.full((1, 3, 32, 32), -1.0)  # air ...
    x[..., 24:, 24:] = 0.0  # ... with tissue in one corner only
    g = torch.Generator().manual_seed(0)
    crop = patch_crop(x, (8, 8), g, -0.9, 0.25)
    assert crop.shape == (1, 3, 8, 8)
    shares = [
        float((patch_crop(x, (8, 8), torch.Generator().manual_seed(s), -0.9, 0.25) > -0.9).float().mean())
        for s in range(20)
    ]
    blind = [
        float((patch_crop(x, (8, 8), torch.Generator().manual_seed(s), -0.9, 0.0) > -0.9).float().mean())
        for s in range(20)
    ]
    assert sum(shares) / 20 > 2 * sum(blind) / 20  # tries until the patch holds tissue
    assert patch_crop(x, None, g, -0.9, 0.25) is x
    assert patch_crop(x, (64, 64), g, -0.9, 0.25).shape == x.shape  # a patch larger than the plane: the plane


def test_mix_roles_weights_and_redraws() -> None:
    deep = VolumeSource(dataset=Volumes(constant(1.0, 17)))
    phantoms = VolumeSource(dataset=Volumes(constant(2.0, 17), constant(2.0, 17)))
    slices = VolumeSource(dataset=Volumes(*[constant(3.0, 1) for _ in range(30)]))
    mix = VolumeMix(sources=[phantoms, deep, slices], weights=[1.0, 1.0, 2.0], uses=["both", "both", "singles"])
    plan = stage_plan(1, {"excerpt": 9, "singles": 4, "patch": [8, 8]}, 8)
    excerpts, singles = [], []
    for i in range(200):
        s = draw_sample(mix, plan, sample_generator(0, i), -1.0)
        assert s["volume"].shape == (1, 9, 8, 8) and s["slices"].shape == (4, 1, 8, 8)
        excerpts.append(float(s["volume"][0, 0, 0, 0]))
        singles += [float(v) for v in s["slices"][:, 0, 0, 0]]
    assert set(excerpts) == {1.0, 2.0}  # the singles-only folder never feeds an excerpt
    share = {v: singles.count(v) / len(singles) for v in (1.0, 2.0, 3.0)}
    assert abs(share[3.0] - 0.5) < 0.08 and abs(share[1.0] - 0.25) < 0.08  # by weight
    # a source mixing shallow and deep volumes: excerpts come from the deep one (redrawn), not from padding
    mixed = VolumeMix(
        sources=[VolumeSource(dataset=Volumes(*[constant(5.0, 1)] * 5, constant(7.0, 17)))], weights=[1.0]
    )
    values = {float(draw_sample(mixed, plan, sample_generator(1, i), -1.0)["volume"][0, -1, 0, 0]) for i in range(50)}
    assert values == {7.0}


def test_one_folder_stream_is_unchanged_by_the_mix() -> None:
    """A single folder draws no extra random numbers: streams of existing configs stay as they were."""
    vols = Volumes(*[torch.randn(1, 17, 8, 8) for _ in range(4)])
    plan = stage_plan(1, {"excerpt": 9, "singles": 2}, 8)
    mix = VolumeMix(sources=[VolumeSource(dataset=vols)], weights=[1.0])
    g_ref = sample_generator(0, 3)
    v = int(torch.randint(0, 4, (), generator=g_ref))
    start = int(torch.randint(0, 17 - 9 + 1, (), generator=g_ref))
    got = draw_sample(mix, plan, sample_generator(0, 3), -1.0)
    assert torch.equal(got["volume"], vols.image(v)[:, start : start + 9])


def test_mix_errors(tmp_path: Path) -> None:
    src = VolumeSource(dataset=Volumes(constant(0.0, 9)))
    for kwargs in ({"weights": [0.0]}, {"weights": [1.0], "uses": ["singles"]}, {"weights": [1.0], "uses": ["all"]}):
        with pytest.raises(ConfigError):
            VolumeMix(sources=[src], **kwargs)
    root = tmp_path / "ph"
    write_dataset(root, 2, 0, split="train", shape=(16, 16, 9))
    spec = parse_spec({"preset": "cpu", "size": [16, 16], "depth": 9})
    mix = open_volumes({"root": str(root), "mix": [{"root": str(root), "weight": 2.0, "use": "singles"}]}, spec)
    assert len(mix.sources) == 2 and mix.uses == ["both", "singles"] and len(mix) == 4
    for bad in ([{"weight": 1.0}], [{"root": str(root), "wieght": 1.0}], {"root": str(root)}):
        with pytest.raises(ConfigError):
            open_volumes({"root": str(root), "mix": bad}, spec)
