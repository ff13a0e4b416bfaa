"""Write a report for a scan: read → the bundle's preprocessing → visual tokens → LM → labels.

:func:`generate_report` is what ``ctvl report`` and the viewer call. It returns ``{"report", "labels",
"warnings"}``: the report text (findings and impression), the 18 CT-RATE labels read from that text by
the report labeler (so the labels say what the report says, nothing else), and everything a reader
should know: warnings from reading the file, a scan whose geometry lies outside the training data
(the stored preprocessing then crops or pads much of it), a model without visual input, a report cut
at the length limit, a finding the diagnosis reads in the scan that the findings still rule out after
re-decoding. The preprocessing itself always comes from the bundle, never from a default.

Scan reading and the token cache are imported inside the functions that use them: at the top they
would pull the dataset and cache stack into every import of this module (about 1,450 modules loaded
instead of 1,340), which a cold ``ctvl report`` pays before it reads the scan.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.io.volume import Volume
from ctvl.report.bundle import LoadedReportModel, load_report_model
from ctvl.report.consistency import (
    ConsistentReport,
    TextLabeler,
    drop_contradicting,
    drop_misplaced,
    follow_prompt,
    make_consistent,
)
from ctvl.report.specifics import misplaced
from ctvl.report.text_tokenizer import IMPRESSION, drop_repeated_sentences, format_report

SMALL_LM_WIDTH = 512  # LMs up to this width decode on one CPU thread (see _threads_for)
_GEOMETRY_SLACK = 1.25  # a value this far outside the training range is worth a warning
_CROP_SLACK = 1.15  # a centre crop that cuts more than ~13 % of the scan's extent is worth a warning
_LOADED: dict[str, LoadedReportModel] = {}


@dataclass
class GeneratedReport:
    """One generated report.

    Attributes:
        findings, impression: the two sections.
        labels: the 18 labels read from the text by the report labeler.
        warnings: things the reader should know (see the module docstring).
        probabilities: per-label probability of the model's auxiliary head ({} without one).
        truncated: the LM hit the length limit before ``<eos>``.
        redecodes: decoding restarts that made the findings follow the diagnosis prompt or removed a
            findings/impression contradiction
            (:mod:`ctvl.report.consistency`).
    """

    findings: str
    impression: str
    labels: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    truncated: bool = False
    redecodes: int = 0

    @property
    def text(self) -> str:
        """Findings and impression as one paragraph (the form metrics compare with references)."""
        return " ".join(p for p in (self.findings, self.impression) if p).strip()

    def as_dict(self) -> dict[str, Any]:
        """The ``ctvl report --json`` form."""
        return {
            "report": format_report(self.findings, self.impression),
            "labels": self.labels,
            "warnings": self.warnings,
        }


@contextlib.contextmanager
def _threads_for(model: Any) -> Iterator[None]:
    """Decode a small CPU model on one thread.

    Token-by-token decoding multiplies matrices of a few hundred columns: a second OpenMP thread adds only
    synchronisation, and on a busy machine (threads waiting for a core) it made decoding ~100x slower in
    our measurements. Wide LMs and GPU models keep the process setting.
    """
    small = model.width <= SMALL_LM_WIDTH and next(model.parameters()).device.type == "cpu"
    before = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def read_scan(path: str | Path, series: str | None = None) -> Volume:
    """Read a NIfTI, NRRD or MetaImage file, DICOM folder, .zip or single .dcm (in HU)."""
    from ctvl.io import read_volume

    return read_volume(path, series=series)


def geometry_warnings(volume: Volume, loaded: LoadedReportModel) -> list[str]:
    """Where a scan lies outside the training data or the model's field of view (empty when it fits)."""
    from ctvl.tokenizers.causal3d.token_cache import geometry_summary

    out: list[str] = []
    spec = loaded.spec
    if spec is None:
        return out
    geo = geometry_summary(volume)
    model_fov = {"x": spec.size[1] * spec.spacing[0], "y": spec.size[0] * spec.spacing[1]}
    if spec.depth is not None:
        model_fov["z"] = spec.depth * spec.spacing[2]
    for axis, fov in model_fov.items():
        extent = geo[f"fov_{axis}"]
        if extent > fov * _CROP_SLACK:
            out.append(
                f"the scan spans {extent:.0f} mm along {axis} but the model sees {fov:.0f} mm: the stored "
                f"preprocessing crops {100 * (1 - fov / extent):.0f} % of it (centre crop)"
            )
        elif extent < fov * 0.5:
            out.append(
                f"the scan spans only {extent:.0f} mm along {axis} of the model's {fov:.0f} mm: "
                f"{100 * (1 - extent / fov):.0f} % of the model input is padding"
            )
    ranges = (loaded.export.get("training_data") or {}).get("geometry") or {}
    for key, (lo, hi) in ranges.items():
        value = geo.get(key)
        if value is None or not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        if value < lo / _GEOMETRY_SLACK or value > hi * _GEOMETRY_SLACK:
            what = key.replace("_", " ").replace("fov", "field of view")
            out.append(
                f"{what} {value:.2f} mm is outside the training scans' range {lo:.2f}-{hi:.2f} mm: the report "
                "may be less reliable (the same preprocessing as in training is applied)"
            )
    return out


class ReportGenerator:
    """Generates reports with a loaded report model (batched; shares one labeler).

    Args:
        loaded: from :func:`load_report_model`.
        labeler: reads the labels from each generated report (``ctvl.eval.labeler.ReportLabeler()``).
        num_beams: beams (None = the model's config; 1 = greedy).
        max_new_tokens: length limit (None = the model's config).
        consistent: self-consistent decoding (:mod:`ctvl.report.consistency`); False writes the first draft
            and only warns about a contradiction (the baseline ``pipelines/measure_consistency.py`` compares).
        voxel_diagnosis: let the bundle's voxel classifier (``diagnosis/``, :mod:`ctvl.report.diagnosis`) set
            the diagnosis prompt; False (or a bundle without one) lets the model's token label head set it.
    """

    def __init__(
        self,
        *,
        loaded: LoadedReportModel,
        labeler: TextLabeler,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        consistent: bool = True,
        voxel_diagnosis: bool = True,
    ) -> None:
        self.loaded = loaded
        self.consistent = consistent
        self.diagnosis = loaded.diagnosis if voxel_diagnosis else None
        self.num_beams = num_beams or loaded.model.config.num_beams
        self.max_new_tokens = max_new_tokens or loaded.model.config.max_new_tokens
        if self.num_beams < 1 or self.max_new_tokens < 1:
            raise InputError("--beams and --max-new-tokens must be >= 1")
        self.labeler = labeler

    def scan_warnings(self, volume: Volume) -> list[str]:
        """Reading warnings + geometry checks + the text-only notice for one scan."""
        out = [f"reading: {w}" for w in volume.meta.warnings]
        if not self.loaded.visual:
            out.append("this model has no visual input (text-only prior): the report does not depend on the scan")
        else:
            out += geometry_warnings(volume, self.loaded)
        return out

    def model_space(self, volume: Volume) -> torch.Tensor | None:
        """The scan in the preprocessing both the tokenizer and the voxel classifier read, (1, T, H, W) in
        [-1, 1], so that :meth:`report` resamples it once; None when they read different specs or only one
        of them is there."""
        return self.loaded.tokenizer.spec.apply(volume) if self.shares_preprocessing else None

    @property
    def shares_preprocessing(self) -> bool:
        """Whether the tokenizer and the voxel classifier read the same model-space tensor."""
        return self.loaded.visual and self.diagnosis is not None and self.diagnosis.spec == self.loaded.tokenizer.spec

    def encode(self, volume: Volume, prepared: torch.Tensor | None = None) -> torch.Tensor | None:
        """Visual latents (D, t, h, w) of a scan with the bundle's preprocessing; None for text-only models.
        ``prepared``: its :meth:`model_space` tensor (1, T, H, W), when already computed."""
        if not self.loaded.visual:
            return None
        if prepared is not None:
            from ctvl.tokenizers.causal3d.inference import encode_tensor

            with torch.inference_mode():
                return encode_tensor(self.loaded.tokenizer, prepared[None]).codes[0].to("cpu", torch.float32)
        from ctvl.tokenizers.causal3d.token_cache import encode_volume

        return encode_volume(self.loaded.tokenizer, volume)["codes"]

    def diagnose(self, volume: Volume, prepared: torch.Tensor | None = None) -> torch.Tensor | None:
        """The voxel classifier's reading of one scan: (18,) label probabilities, or (18, 2) probabilities and
        detail codes when it has a detail head (:meth:`~ctvl.report.diagnosis.VoxelDiagnosis.reading`); None
        without one. ``prepared``: its :meth:`model_space` tensor (1, T, H, W), when already computed."""
        if self.diagnosis is None:
            return None
        with torch.inference_mode():
            if prepared is not None:
                return self.diagnosis.reading(prepared[None])[0].cpu()
            return self.diagnosis.of_volume(volume).cpu()

    def from_codes(
        self,
        codes: Sequence[torch.Tensor | None],
        warnings: Sequence[list[str]] | None = None,
        diagnosis: Sequence[torch.Tensor | None] | None = None,
    ) -> list[GeneratedReport]:
        """Reports for B scans given their latents (all None for a text-only model).

        Args:
            codes: B latent grids (D, t, h, w) from :meth:`encode`.
            warnings: per scan, notes to pass on.
            diagnosis: per scan, the reading of :meth:`diagnose`; required when the generator uses a voxel
                classifier.
        """
        model = self.loaded.model
        device = next(model.parameters()).device
        batch = None if not self.loaded.visual else [c.to(device) for c in codes]  # type: ignore[union-attr]
        states = voxel_probs = None
        if self.diagnosis is not None:
            if diagnosis is None or len(diagnosis) != len(codes) or any(d is None for d in diagnosis):
                raise InputError("this report bundle's diagnosis reads the voxels: pass diagnose(volume) per scan")
            reading = torch.stack([d.float().cpu() for d in diagnosis if d is not None])  # (B, 18) or (B, 18, 2)
            states = self.diagnosis.states(reading).to(device)
            voxel_probs = reading[..., 0] if reading.ndim == 3 else reading  # (B, 18)
        with _threads_for(model):
            rows, probs = model.generate_with_probabilities(
                batch,
                batch=len(codes),
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                states=states,
            )
        if voxel_probs is not None:
            probs = voxel_probs
        out = []
        for b, ids in enumerate(rows):
            fixed = ConsistentReport(ids=ids)
            if self.consistent:
                fixed = self._consistent(
                    ids, None if batch is None else batch[b], probs, b, None if states is None else states[b]
                )
            ids = fixed.ids
            findings, impression = (drop_repeated_sentences(s) for s in self.loaded.text.split_report(ids))
            notes = list(warnings[b]) if warnings is not None else []
            truncated = len(ids) >= self.max_new_tokens
            if truncated:
                notes.append(f"the report reached the length limit ({self.max_new_tokens} tokens) and may be cut off")
            elif not impression:
                notes.append("the model wrote no impression section")
            clash = self.labeler.contradictions(findings, impression)
            if clash and not self.consistent:
                named = ", ".join(clash)
                notes.append(f"the impression states {named} but the findings rule it out: read both sections")
            elif clash:
                impression, dropped = drop_contradicting(findings, impression, self.labeler)
                notes.append(
                    f"{len(dropped)} impression sentence(s) that stated what the findings rule out were removed "
                    f"after {fixed.redecodes} re-decodes: {' '.join(dropped)}"
                )
            if self.consistent and misplaced(findings, impression, self.labeler.label):
                impression, dropped = drop_misplaced(findings, impression, self.labeler)
                notes.append(
                    f"{len(dropped)} impression sentence(s) that gave a finding a location or size the findings do "
                    f"not were removed after {fixed.redecodes} re-decodes: {' '.join(dropped)}"
                )
            text = " ".join(p for p in (findings, impression) if p)
            labels = self.labeler.label(text)
            against = [n for n in fixed.against_prompt if not labels.get(n)]
            if against:
                notes.append(
                    f"the diagnosis reads {', '.join(against)} in the scan but the findings rule it out after "
                    f"{fixed.redecodes} re-decodes: check the scan for it"
                )
            p = {} if probs is None else {n: round(float(v), 4) for n, v in zip(labels, probs[b].tolist())}
            out.append(GeneratedReport(findings, impression, labels, notes, p, truncated, fixed.redecodes))
        return out

    def _consistent(
        self,
        ids: list[int],
        codes: torch.Tensor | None,
        probs: torch.Tensor | None,
        b: int,
        prompt: torch.Tensor | None = None,
    ) -> ConsistentReport:
        """Self-consistent decoding of report ``b`` (:func:`ctvl.report.consistency.make_consistent`);
        ``prompt`` is its (18,) diagnosis prompt when a voxel classifier set it."""
        model, text = self.loaded.model, self.loaded.text
        states = None
        if prompt is not None:
            states = {n: bool(v) for n, v in zip(CTRATE_LABELS, prompt.tolist())}
        elif model.diagnosis is not None and probs is not None:
            states = {n: bool(v > model.config.label_threshold) for n, v in zip(CTRATE_LABELS, probs[b].tolist())}

        def redecode(prefix: list[int], banned: list[int]) -> list[int]:
            with _threads_for(model):
                return model.continue_report(codes, prefix, banned, self.max_new_tokens, self.num_beams, states=prompt)

        impression_id = text.special[IMPRESSION]
        followed = ConsistentReport(ids=ids)
        if states:  # first the findings follow the prompt, then the impression is made to agree with them
            followed = follow_prompt(
                followed,
                split_ids=lambda r: r.index(impression_id) if impression_id in r else len(r),
                decode=text.decode,
                labeler=self.labeler,
                present=[n for n in CTRATE_LABELS if states.get(n)],
                redecode=redecode,
            )
        fixed = make_consistent(
            followed.ids,
            split=text.split_report,
            decode=text.decode,
            impression_id=impression_id,
            labeler=self.labeler,
            present=lambda label: bool(states and states.get(label)),
            redecode=redecode,
            encode=text.encode,
        )
        fixed.redecodes += followed.redecodes
        fixed.against_prompt = list(followed.unresolved)
        return fixed

    def report(self, volume: Volume) -> GeneratedReport:
        """One scan → one report."""
        prepared = self.model_space(volume)
        codes, probs = self.encode(volume, prepared), self.diagnose(volume, prepared)
        return self.from_codes([codes], [self.scan_warnings(volume)], [probs])[0]


def _cache_key(bundle: str | Path | None) -> str:
    return str(Path(bundle).resolve()) if bundle is not None else "<default>"


def _loaded(bundle: str | Path | LoadedReportModel | None) -> LoadedReportModel:
    if isinstance(bundle, LoadedReportModel):
        return bundle
    key = _cache_key(bundle)
    if key not in _LOADED:
        _LOADED[key] = load_report_model(bundle)
    return _LOADED[key]


def generate_report(
    path_or_volume: str | Path | Volume,
    bundle: str | Path | LoadedReportModel | None = None,
    *,
    labeler: TextLabeler,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    series: str | None = None,
) -> dict[str, Any]:
    """Write a report for one scan.

    Args:
        path_or_volume: NIfTI / NRRD / MetaImage file, DICOM folder / .zip / .dcm, or a :class:`Volume` in HU.
        bundle: report bundle / run folder, a loaded model, or None for the bundle shipped with ctvl.
        labeler: reads the labels from the report (``ctvl.eval.labeler.ReportLabeler()``).
        num_beams: 1 = greedy (default: the model's config), > 1 = beam search.
        max_new_tokens: length limit in tokens (default: the model's config).
        series: series of a multi-series DICOM folder.

    Returns:
        ``{"report": str, "labels": {18 names: 0/1}, "warnings": [str, ...]}``.
    """
    if isinstance(path_or_volume, Volume):
        loaded, volume = _loaded(bundle), path_or_volume
    elif isinstance(bundle, LoadedReportModel) or _cache_key(bundle) in _LOADED:  # nothing to overlap the read with
        loaded, volume = _loaded(bundle), read_scan(path_or_volume, series)
    else:  # read the scan while the model (and transformers, ~3.5 s to import) loads: a cold start overlaps both
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctvl-read") as pool:
            pending = pool.submit(read_scan, path_or_volume, series)
            loaded = _loaded(bundle)
            volume = pending.result()
    generator = ReportGenerator(loaded=loaded, labeler=labeler, num_beams=num_beams, max_new_tokens=max_new_tokens)
    return generator.report(volume).as_dict()
