"""The Synthesize tab's work: the same calls as ``ctvl synthesize``, packed for a browser.

:class:`Synthesizer` checks a request (:func:`parse_request`: one-line messages for a bad seed, steps,
guidance or depth), then calls :func:`ctvl.synthesis.synthesize` and :func:`ctvl.synthesis.write_result`
(what the CLI calls) with the report labeler reading the prompt, and puts the labels the prompt states
beside the labels a classifier reads from the generated volume (:func:`label_rows`).

The classifier is handed in: ``classify(model_tensors (K, 1, D, H, W) in [-1, 1]) -> [{label: probability}]``
(K dicts), optionally with ``thresholds`` ({label: threshold}, default 0.5) and ``spec`` (the
:class:`~ctvl.data.transforms.PreprocessSpec` it was trained on) attributes. :func:`default_classifier`
adapts the 3D feature network of :mod:`ctvl.eval.features` (CTNet3D), or gives None when that is not
installed; the table then says "classifier not installed".

The generator is loaded once per server, on the first request (so the viewer starts at once and a bundle
installed while it runs is found); a failed load is not remembered, and its one-line message is what the
page shows. Requests run one at a time.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import CtvlError, InputError
from ctvl.io.volume import Volume
from ctvl.viewer.planes import ScanView

log = logging.getLogger("ctvl.viewer")

Classifier = Callable[[Any], list[dict[str, float]]]  # (K, 1, D, H, W) tensor -> K {label: probability}
LABEL_HEADERS = ["finding", "prompt states", "classifier reads", "classifier probability"]
NO_CLASSIFIER = "classifier not installed"
MAX_SEED = 2**32 - 1
MAX_STEPS = 100  # a browser request on a shared CPU server; `ctvl synthesize` has no cap
MAX_GUIDANCE = 20.0
MAX_DEPTH = 129  # slices; `ctvl synthesize` allows up to 513
MAX_PROMPT_CHARS = 2000
APP_HINT = "(for this viewer: `ctvl app --generator BUNDLE`)"


@dataclass(frozen=True)
class SynthesisRequest:
    """A checked request; None means the bundle's default."""

    prompt: str
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    depth: int | None = None


def _number(value: Any, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return number


def _whole(value: Any, name: str, low: int, high: int, unit: str = "") -> int | None:
    number = _number(value, name)
    if number is None:
        return None
    if number != int(number) or not low <= number <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}{unit}, got {number:g}")
    return int(number)


def parse_request(
    prompt: Any,
    seed: Any = 0,
    steps: Any = None,
    guidance: Any = None,
    depth: Any = None,
    *,
    max_depth: int = MAX_DEPTH,
    max_steps: int = MAX_STEPS,
) -> SynthesisRequest:
    """Check the tab's inputs (as the browser or the API sends them: numbers, numeric strings or blanks).

    Args:
        prompt: findings in words ("" or None: the unconditional model).
        seed: seed of the volume, 0..2^32-1 (blank: 0).
        steps: flow steps, 1..``max_steps`` (blank: the bundle's).
        guidance: classifier-free guidance, 0..20 (blank: the bundle's).
        depth: slices, 1..``max_depth`` (blank: the bundle's; the library rounds up to 1 + 8k with a warning).
    Raises:
        InputError: one line naming the field, its range and the value given.
    """
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"the prompt must be text, got {type(prompt).__name__}")
    prompt = prompt or ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    seed_value = _whole(seed, "seed", 0, MAX_SEED)
    guidance_value = _number(guidance, "guidance")
    if guidance_value is not None and not 0 <= guidance_value <= MAX_GUIDANCE:
        raise InputError(
            f"guidance must be from 0 to {MAX_GUIDANCE:g} (0 = unconditional, 1 = no guidance), got {guidance_value:g}"
        )
    return SynthesisRequest(
        prompt=prompt,
        seed=0 if seed_value is None else seed_value,
        steps=_whole(steps, "steps", 1, max_steps),
        guidance=guidance_value,
        depth=_whole(depth, "depth", 1, max_depth, " slices"),
    )


def label_rows(
    prompt_labels: Mapping[str, int] | None,
    probabilities: Mapping[str, float] | None,
    thresholds: Mapping[str, float] | None = None,
    missing: str = NO_CLASSIFIER,
) -> list[list]:
    """One row per CT-RATE label: [name, what the prompt states, what the classifier reads, its probability].

    Args:
        prompt_labels: the labeler's reading of the prompt (None: no prompt, the unconditional model).
        probabilities: the classifier's label probabilities of the volume (None: no reading).
        thresholds: per-label decision thresholds (default 0.5).
        missing: what the classifier column says without a reading.
    """
    rows = []
    for name in CTRATE_LABELS:
        stated = "— (no prompt)" if prompt_labels is None else ("yes" if int(prompt_labels.get(name, 0)) else "no")
        if probabilities is None or name not in probabilities:
            rows.append([name, stated, missing, ""])
            continue
        p = float(probabilities[name])
        read = "yes" if p >= float((thresholds or {}).get(name, 0.5)) else "no"
        rows.append([name, stated, read, round(p, 3)])
    return rows


@dataclass
class SynthesisOutput:
    """One generated volume, ready for the page.

    Attributes:
        volume: the volume in HU (as written to ``nifti``).
        view: the volume on its canonical grid for the three planes.
        rows: :func:`label_rows` of the prompt and the classifier.
        nifti: the NIfTI file (int16 HU); ``recipe_json``: its sidecar (prompt, seed, steps, guidance, ...).
        recipe: the sidecar's content.
        warnings: what was changed or could not be done, in words.
        summary: a Markdown paragraph: shape, spacing, settings, time, generator, classifier agreement.
    """

    volume: Volume
    view: ScanView
    rows: list[list]
    nifti: Path
    recipe_json: Path
    recipe: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


class Synthesizer:
    """A generator bundle behind the Synthesize tab: loaded once on first use, one request at a time.

    Args:
        bundle: generator bundle or run folder (None: the shipped ``ctvl/bundles/synthesis-phantom-cpu``).
        classify: the classifier (see the module docstring), or None when none is installed.
        loader: ``loader(bundle) -> LoadedGenerator`` (default :func:`ctvl.synthesis.load_generator`).
        labeler: text -> 18 labels (default: :class:`ctvl.eval.labeler.ReportLabeler`, as ``ctvl synthesize``).
        max_depth, max_steps: the largest depth and step count a request may ask for.
    """

    def __init__(
        self,
        *,
        bundle: str | Path | None = None,
        classify: Classifier | None = None,
        loader: Callable[[Any], Any] | None = None,
        labeler: Callable[[str], dict] | None = None,
        max_depth: int = MAX_DEPTH,
        max_steps: int = MAX_STEPS,
    ) -> None:
        self.bundle = bundle
        self.classify = classify
        self.max_depth, self.max_steps = int(max_depth), int(max_steps)
        self._loader = loader
        self._labeler = labeler
        self._generator = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def generator(self):
        """The loaded generator (loaded on the first call; a failure is raised again on the next call).

        Raises:
            InputError: the bundle is missing or unreadable (its one-line message, plus the app option).
        """
        with self._load_lock:
            if self._generator is None:
                from ctvl.synthesis import load_generator

                try:
                    self._generator = (self._loader or load_generator)(self.bundle)
                except CtvlError as exc:
                    raise InputError(f"{exc} {APP_HINT}") from exc
                log.info("Synthesize tab: generator %s from %s", self._generator.generator_id, self._generator.source)
            return self._generator

    def labeler(self) -> Callable[[str], dict]:
        if self._labeler is None:
            from ctvl.eval.labeler import ReportLabeler

            self._labeler = ReportLabeler().label
        return self._labeler

    def parse(
        self, prompt: Any, seed: Any = 0, steps: Any = None, guidance: Any = None, depth: Any = None
    ) -> SynthesisRequest:
        """:func:`parse_request` with this server's caps."""
        return parse_request(prompt, seed, steps, guidance, depth, max_depth=self.max_depth, max_steps=self.max_steps)

    def run(self, request: SynthesisRequest, out_dir: str | Path) -> SynthesisOutput:
        """Generate one volume, classify it, and write ``ctvl_synthetic_seed{seed}.nii.gz`` and its ``.json``.

        Both go into ``out_dir``.
        """
        from ctvl.synthesis import synthesize, write_result

        gen = self.generator()
        labeler = self.labeler()
        with self._run_lock:  # the model and torch's threads are shared
            result = synthesize(
                gen,
                request.prompt,
                seed=request.seed,
                steps=request.steps,
                guidance=request.guidance,
                depth=request.depth,
                n=1,
                labeler=labeler,
            )
            probabilities, missing, notes = self._read(result.model_tensors, gen.spec)
        warnings = [*result.warnings, *notes]
        nifti = write_result(result, Path(out_dir) / f"ctvl_synthetic_seed{request.seed}.nii.gz")[0]
        volume = result.volumes[0]
        rows = label_rows(result.prompt_labels, probabilities, getattr(self.classify, "thresholds", None), missing)
        recipe = result.recipe(0)
        return SynthesisOutput(
            volume=volume,
            view=ScanView.from_volume(volume),
            rows=rows,
            nifti=nifti,
            recipe_json=nifti.with_name(nifti.name[: -len(".nii.gz")] + ".json"),
            recipe=recipe,
            warnings=warnings,
            summary=summarize(recipe, result.seconds, rows, warnings, getattr(self.classify, "source", None)),
        )

    def _read(self, tensors, spec) -> tuple[dict[str, float] | None, str, list[str]]:
        """(probabilities of volume 0 or None, what the column says without them, warnings)."""
        if self.classify is None:
            return None, NO_CLASSIFIER, []
        notes = []
        trained = getattr(self.classify, "spec", None)
        depth = int(tensors.shape[2])
        if trained is not None and (
            tuple(map(float, trained.spacing)) != tuple(map(float, spec.spacing)) or trained.depth not in (None, depth)
        ):
            slices = f"{trained.depth} slices at " if trained.depth else ""
            notes.append(
                f"the classifier was trained on {slices}{_mm(trained.spacing)} mm; this volume has "
                f"{depth} slices at {_mm(spec.spacing)} mm, so its reading may be off"
            )
        try:
            probabilities = self.classify(tensors)[0]
        except Exception as exc:  # the classifier is an add-on: the volume is still shown
            if not isinstance(exc, CtvlError):
                log.exception("the Synthesize tab's classifier failed")
            why = " ".join(str(exc).split()) or type(exc).__name__
            return None, "not read", [*notes, f"the classifier could not read this volume: {why}"]
        return {name: float(probabilities[name]) for name in CTRATE_LABELS if name in probabilities}, "", notes


def _mm(values) -> str:
    return " × ".join(f"{float(v):g}" for v in values)


def summarize(
    recipe: Mapping[str, Any], seconds: float, rows: list[list], warnings: list[str], classifier: str | None = None
) -> str:
    """The Markdown under the Synthesize button: what was made, how, and how far the classifier agrees."""
    used = recipe["used_prompt"]
    lines = [
        f"**Generated** {_mm(recipe['shape'])} voxels at {_mm(recipe['spacing_mm'])} mm (LPS, HU) in {seconds:.1f} s: "
        f"seed {recipe['seed']}, {recipe['steps']} steps, guidance {recipe['guidance']:g}, depth {recipe['depth']}.",
        f"Conditioned on: {'the null text (unconditional)' if not used else repr(used)}. "
        f"Generator `{recipe['generator'].get('id', '?')}`.",
    ]
    read = [r for r in rows if r[2] in ("yes", "no") and r[1] in ("yes", "no")]
    if read:
        agree = sum(r[1] == r[2] for r in read)
        lines.append(
            f"The classifier{f' ({classifier})' if classifier else ''} agrees with the prompt on "
            f"{agree} of {len(read)} labels."
        )
    elif rows and rows[0][2] == NO_CLASSIFIER:
        lines.append("No classifier is installed, so the volume's labels are not read.")
    if warnings:
        lines.append("**Notes:**\n" + "\n".join(f"- {w}" for w in warnings))
    return "\n\n".join(lines)


class FeatureNetClassifier:
    """:mod:`ctvl.eval.features`' CTNet3D as a Synthesize-tab classifier (thresholds and spec from its bundle)."""

    def __init__(self, *, nets) -> None:
        self.nets = nets
        self.spec = nets.spec
        self.thresholds = {name: float(t) for name, t in zip(CTRATE_LABELS, nets.thresholds.tolist())}
        self.source = f"CTNet3D, {Path(nets.folder).name}" if getattr(nets, "folder", None) else "CTNet3D"

    def __call__(self, tensors) -> list[dict[str, float]]:
        size = tuple(int(s) for s in self.spec.size)
        if tensors.ndim != 5 or tuple(int(s) for s in tensors.shape[-2:]) != size:
            raise InputError(
                f"it reads {size[0]} × {size[1]} model-space slices and this generator makes "
                f"{tuple(tensors.shape[-2:])}"
            )
        probabilities = self.nets.probabilities(tensors)
        return [dict(zip(CTRATE_LABELS, (float(p) for p in row))) for row in probabilities]


def default_classifier(bundle: str | Path | None = None) -> Classifier | None:
    """The installed feature-network bundle's CTNet3D as a classifier, or None (logged) when it is not there.

    The one place that knows :mod:`ctvl.eval.features`' API: ``load_feature_nets(path) -> FeatureNets`` with
    ``.probabilities(x) -> (N, 18)``, ``.thresholds`` (18,) and ``.spec``.
    """
    try:
        from ctvl.eval.features.bundle import load_feature_nets

        nets = load_feature_nets(bundle)
    except (ImportError, CtvlError) as exc:
        log.warning("no classifier for the Synthesize tab: %s", exc)
        return None
    return FeatureNetClassifier(nets=nets)


__all__ = [
    "LABEL_HEADERS",
    "NO_CLASSIFIER",
    "Classifier",
    "FeatureNetClassifier",
    "SynthesisOutput",
    "SynthesisRequest",
    "Synthesizer",
    "default_classifier",
    "label_rows",
    "parse_request",
    "summarize",
]
