"""Text → volume: input checks with warnings, seeds, HU output on the spec's grid, NIfTI + sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctvl.errors import InputError
from ctvl.eval.labeler import ReportLabeler
from ctvl.io import read_volume
from ctvl.synthesis import synthesize, write_result
from ctvl.synthesis.sample import check_depth, output_paths

LABEL = ReportLabeler().label
PROMPT = "moderate right pleural effusion, cardiomegaly"


def test_depth_is_rounded_up_to_one_plus_8k():
    assert check_depth(None, 33) == (33, [])
    assert check_depth(17, 33) == (17, [])
    depth, warnings = check_depth(20, 33)
    assert depth == 25 and "generating 25 slices" in warnings[0]
    for bad in (0, 10_000):
        with pytest.raises(InputError, match="--depth"):
            check_depth(bad, 33)


def test_a_volume_in_hu_on_the_bundles_grid(tiny_gen):
    result = synthesize(tiny_gen, PROMPT, seed=3, steps=2, labeler=LABEL)
    v, spec = result.volumes[0], tiny_gen.spec
    assert v.shape == (spec.size[1], spec.size[0], spec.depth) and result.model_tensors.shape == (1, 1, 17, 32, 32)
    assert np.allclose(v.spacing, spec.spacing) and v.axcodes == "LPS"
    assert -1000 <= v.data.min() and v.data.max() <= 1000
    assert result.prompt_labels["Pleural effusion"] == 1 and result.prompt_labels["Cardiomegaly"] == 1
    assert result.warnings == []


def test_same_seed_same_volume_and_n_extends_it(tiny_gen):
    one = synthesize(tiny_gen, PROMPT, seed=5, steps=2)
    two = synthesize(tiny_gen, PROMPT, seed=5, steps=2, n=2)
    assert torch.equal(one.model_tensors[0], two.model_tensors[0]) and two.seeds == [5, 6]
    assert not torch.equal(two.model_tensors[0], two.model_tensors[1])


def test_empty_and_finding_free_prompts_say_what_they_sample(tiny_gen):
    empty = synthesize(tiny_gen, "  ", steps=1, labeler=LABEL)
    assert empty.used_prompt == "" and "unconditional" in empty.warnings[0]
    pizza = synthesize(tiny_gen, "a pizza with extra cheese", steps=1, labeler=LABEL)
    assert pizza.used_prompt == "normal chest CT" and "normal chest" in pizza.warnings[0]


def test_odd_depth_is_rounded_with_a_warning(tiny_gen):
    result = synthesize(tiny_gen, PROMPT, steps=1, depth=12)
    assert result.depth == 17 and result.volumes[0].shape[2] == 17 and "generating 17 slices" in result.warnings[0]
    assert synthesize(tiny_gen, PROMPT, steps=1, depth=9).volumes[0].shape[2] == 9  # shorter than trained


@pytest.mark.parametrize(
    "kw, match", [({"steps": 0}, "--steps"), ({"guidance": -0.5}, "--guidance"), ({"n": 0}, "--n")]
)
def test_bad_settings_are_one_line_errors(tiny_gen, kw, match):
    with pytest.raises(InputError, match=match):
        synthesize(tiny_gen, PROMPT, **kw)


def test_written_nifti_and_sidecar(tiny_gen, tmp_path: Path):
    result = synthesize(tiny_gen, PROMPT, seed=2, steps=2, n=2, labeler=LABEL)
    paths = write_result(result, tmp_path / "synth.nii.gz")
    assert [p.name for p in paths] == ["synth_0.nii.gz", "synth_1.nii.gz"]
    back = read_volume(paths[1])
    assert np.allclose(back.affine, result.volumes[1].affine, atol=1e-4)
    assert np.abs(back.data - result.volumes[1].data).max() <= 0.5  # int16 HU
    assert back.meta.extra.get("description", "").startswith("ctvl synthesize seed=3")
    recipe = json.loads((tmp_path / "synth_1.json").read_text())
    assert recipe["prompt"] == PROMPT and recipe["seed"] == 3 and recipe["steps"] == 2
    assert recipe["units"] == "HU" and recipe["spacing_mm"] == pytest.approx(list(tiny_gen.spec.spacing))


def test_output_names_are_checked():
    with pytest.raises(InputError, match=".nii.gz"):
        output_paths("out.png", 1)
    assert output_paths("a/x.nii", 2)[1].name == "x_1.nii"
