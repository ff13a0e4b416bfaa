"""Text → CT: sample latents with the flow, decode them with the tokenizer, write NIfTI with its recipe.

Path of a prompt: checks (empty → unconditional, no finding recognised → a normal chest, depth rounded up to
1 + 8k, bad steps/guidance refused) → MiniLM context → :func:`ctvl.synthesis.flow.sample` (classifier-free
guidance, one seeded noise per volume) → LFQ codes (B, C, t, h, w) → the tokenizer's streaming decoder →
model space (B, 1, D, H, W) in [-1, 1] → :meth:`PreprocessSpec.to_volume` → HU on the bundle's spacing,
LPS axes, grid centred at the world origin. Volume ``k`` of a request uses seed ``seed + k``, so a seed
reproduces its volume on the same machine, and ``--n 4`` gives the same first volume as ``--n 1``.

The report labeler lives in a higher layer: callers hand in ``labeler`` (text → 18 labels) to read the
prompt's findings; without it the "no finding recognised" check is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctvl.atomic import write_json
from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.io.nifti import write_nifti
from ctvl.io.volume import Volume, VolumeMeta
from ctvl.synthesis.bundle import LoadedGenerator
from ctvl.synthesis.flow import sample
from ctvl.synthesis.prompts import NORMAL_PHRASES

Labeler = Callable[[str], dict[str, int]]  # report text -> {label name: 0/1}
MAX_DEPTH = 1 + 8 * 64  # 513 slices


@dataclass
class SynthesisResult:
    """Volumes generated for one prompt.

    Attributes:
        prompt: the prompt as given.
        used_prompt: the text the generator was conditioned on ("" = the null text: unconditional).
        volumes: K HU volumes, (X, Y, Z) = (W, H, D), on the bundle's spacing.
        model_tensors: (K, 1, D, H, W) float32 in [-1, 1] (the tokenizer's model space).
        seeds: the seed of each volume.
        steps, guidance, depth: the sampling settings used.
        prompt_labels: the 18 labels read from the prompt (None without a labeler).
        warnings: what was changed or could not be honoured, in words.
        seconds: wall time of sampling + decoding.
        generator: the bundle's id and folder.
    """

    prompt: str
    used_prompt: str
    volumes: list[Volume]
    model_tensors: torch.Tensor
    seeds: list[int]
    steps: int
    guidance: float
    depth: int
    prompt_labels: dict[str, int] | None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    generator: dict[str, str] = field(default_factory=dict)

    def recipe(self, k: int = 0) -> dict[str, Any]:
        """JSON-able description of volume ``k`` (the sidecar file)."""
        v = self.volumes[k]
        return {
            "format": "ctvl-synthesis-1",
            "prompt": self.prompt,
            "used_prompt": self.used_prompt,
            "seed": self.seeds[k],
            "steps": self.steps,
            "guidance": self.guidance,
            "depth": self.depth,
            "spacing_mm": list(v.spacing),
            "shape": list(v.shape),
            "orientation": "LPS",
            "units": "HU",
            "prompt_labels": self.prompt_labels,
            "warnings": self.warnings,
            "generator": self.generator,
        }


def check_depth(depth: int | None, default: int, multiple: int = 8) -> tuple[int, list[str]]:
    """The depth to generate (1 + multiple·k slices) and a warning when ``depth`` had to be rounded up.

    Raises:
        InputError: depth < 1 or above :data:`MAX_DEPTH`.
    """
    if depth is None:
        return default, []
    if depth < 1 or depth > MAX_DEPTH:
        raise InputError(f"--depth must be between 1 and {MAX_DEPTH} slices, got {depth}")
    rounded = 1 + multiple * -(-(depth - 1) // multiple)
    if rounded != depth:
        return rounded, [f"depth {depth} is not 1 + {multiple}k slices; generating {rounded} slices instead"]
    return depth, []


def _condition(prompt: str, labeler: Labeler | None) -> tuple[str, dict[str, int] | None, list[str]]:
    """The text to condition on, the prompt's labels and warnings (see the module docstring)."""
    if not prompt or not prompt.strip():
        return "", None, ["empty prompt: sampling the unconditional model (the learned null text)"]
    if labeler is None:
        return prompt.strip(), None, []
    labels = {name: int(labeler(prompt).get(name, 0)) for name in CTRATE_LABELS}
    if not any(labels.values()):
        return (
            NORMAL_PHRASES[0],
            labels,
            [
                f"the prompt names none of the 18 CT-RATE findings the labeler knows; "
                f"sampling a normal chest (conditioned on '{NORMAL_PHRASES[0]}')"
            ],
        )
    return prompt.strip(), labels, []


def decode_codes(gen: LoadedGenerator, codes: torch.Tensor, depth: int, batch_size: int = 4) -> torch.Tensor:
    """Tokenizer decode of generated codes (B, C, t, h, w) to model space (B, 1, depth, H, W)."""
    h, w = (int(s) for s in gen.spec.size)
    out = []
    with torch.no_grad():
        for i in range(0, codes.shape[0], batch_size):
            out.append(gen.tokenizer.model.decode(codes[i : i + batch_size], shape=(depth, h, w), chunk_latents=1))
    return torch.cat(out).float().clamp(-1, 1)


def generate(
    gen: LoadedGenerator,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int,
    guidance: float,
    depth: int,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Model-space volumes for a list of prompts (the batched path behind evaluation).

    Args:
        gen: the loaded generator.
        prompts: texts to condition on ("" = unconditional), one per volume.
        seeds: one seed per volume.
        steps, guidance: sampling settings.
        depth: slices per volume (1 + 8k).
        batch_size: volumes sampled together.
        progress: called with the number of volumes finished so far.

    Returns:
        (N, 1, depth, H, W) float32 in [-1, 1].
    """
    if len(prompts) != len(seeds):
        raise InputError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    factor = int(gen.tokenizer.model.config.time_factor)
    space = int(gen.tokenizer.model.config.space_factor)
    h, w = (int(s) // space for s in gen.spec.size)
    frames = 1 + (depth - 1) // factor
    unique = sorted({p for p in prompts if p})
    contexts = dict(zip(unique, gen.text.encode(unique))) if unique else {}
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i : i + batch_size])
        texts = [contexts[p] if p else None for p in chunk]
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch_size]]
        codes = sample(gen.model, texts, (frames, h, w), steps=steps, guidance=guidance, generators=gens)
        out.append(decode_codes(gen, codes, depth))
        if progress is not None:
            progress(min(i + batch_size, len(prompts)))
    return torch.cat(out)


def synthesize(
    gen: LoadedGenerator,
    prompt: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    depth: int | None = None,
    n: int = 1,
    labeler: Labeler | None = None,
) -> SynthesisResult:
    """Generate ``n`` CT volumes for one prompt.

    Args:
        gen: the loaded generator (:func:`~ctvl.synthesis.bundle.load_generator`).
        prompt: findings in words; "" samples the unconditional model.
        seed: seed of the first volume (volume k uses ``seed + k``).
        steps: flow steps (default: the bundle's).
        guidance: classifier-free guidance scale (default: the bundle's; 0 = unconditional, 1 = none).
        depth: slices (1 + 8k; others are rounded up with a warning; default: the bundle's depth).
        n: number of volumes.
        labeler: text → 18 labels, to read the prompt's findings (handed in by the caller).

    Raises:
        InputError: steps < 1, guidance < 0, n < 1, or a depth out of range.
    """
    cfg = gen.config
    steps = cfg.default_steps if steps is None else int(steps)
    guidance = cfg.default_guidance if guidance is None else float(guidance)
    if steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    if not guidance >= 0:
        raise InputError(f"--guidance must be >= 0, got {guidance}")
    if n < 1:
        raise InputError(f"--n must be >= 1, got {n}")
    factor = int(gen.tokenizer.model.config.time_factor)
    depth, warnings = check_depth(depth, int(gen.spec.depth or 1 + factor * 4), factor)
    used, labels, more = _condition(prompt, labeler)
    warnings = more + warnings
    words = gen.text.count_tokens(used) if used else 0
    if words > gen.text.max_tokens:
        warnings.append(f"the prompt has {words} word pieces; only the first {gen.text.max_tokens} are read")
    began = time.perf_counter()
    seeds = [int(seed) + k for k in range(n)]
    # one volume per batch: volume k is then the same whatever n (batched kernels may round differently)
    tensors = generate(gen, [used] * n, seeds, steps=steps, guidance=guidance, depth=depth, batch_size=1)
    meta = VolumeMeta(modality="CT", source="", extra={"generated_by": "ctvl synthesize"})
    volumes = [gen.spec.to_volume(t, meta=meta) for t in tensors]
    return SynthesisResult(
        prompt=prompt,
        used_prompt=used,
        volumes=volumes,
        model_tensors=tensors,
        seeds=seeds,
        steps=steps,
        guidance=guidance,
        depth=depth,
        prompt_labels=labels,
        warnings=warnings,
        seconds=time.perf_counter() - began,
        generator={"id": gen.generator_id, "bundle": str(gen.source)},
    )


def output_paths(out: str | Path, n: int) -> list[Path]:
    """Where volume k of ``n`` goes: ``out`` itself for one, ``stem_k.nii.gz`` for several."""
    out = Path(out)
    if not (out.name.endswith(".nii.gz") or out.suffix == ".nii"):
        raise InputError("the output must end in .nii.gz or .nii; choose another -o", path=out)
    if n == 1:
        return [out]
    stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
    ext = ".nii.gz" if out.name.endswith(".nii.gz") else ".nii"
    return [out.with_name(f"{stem}_{k}{ext}") for k in range(n)]


def write_result(result: SynthesisResult, out: str | Path) -> list[Path]:
    """Write each volume as NIfTI (int16 HU, recipe in ``descrip``) with a sidecar ``.json`` beside it."""

    paths = output_paths(out, len(result.volumes))
    for k, path in enumerate(paths):
        recipe = result.recipe(k)
        text = f"ctvl synthesize seed={recipe['seed']} steps={result.steps} g={result.guidance}: {result.prompt}"
        write_nifti(result.volumes[k], path, dtype="int16", description=text)
        sidecar = path.with_name(path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem)
        write_json(sidecar.with_name(sidecar.name + ".json"), recipe)
    return paths
