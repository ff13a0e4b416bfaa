"""One preprocessing spec: HU volume on its stored grid ⇄ model tensor (1, T, H, W) in [-1, 1].

:class:`PreprocessSpec` is a small serialisable dataclass. Every checkpoint stores the spec it was
trained with and inference rebuilds the chain from the stored spec, so training and inference can
never preprocess differently.

The chain is MONAI dictionary transforms on a ``MetaTensor`` that carries the volume's affine:

1. ``Orientationd(axcodes=spec.orientation)`` — flips/permutes voxels (no interpolation) so the MONAI
   axes (X, Y, Z) point to the three letters of ``spec.orientation``.
2. optional anti-aliasing (Gaussian, replicate border) before a downsampling resample.
3. ``Spacingd(pixdim=spec.spacing)`` — trilinear resampling to the target voxel size (the rotation
   part of an oblique affine is kept: only the voxel size changes).
4. ``ScaleIntensityRanged(clip=True)`` — HU window ``spec.window`` → ``spec.out_range``.
5. ``ResizeWithPadOrCropd`` — central crop/pad in-plane to (W, H); depth centrally to ``spec.depth``,
   or (``depth=None``) kept and then ``SpatialPadd(method="end")`` pads at the end to the next
   1 + 8k slices. Padding uses ``spec.pad_value`` (−1 = air).

**Axis layout.** MONAI works on (C, X, Y, Z); the model tensor is (C, T, H, W) with T = Z, H = Y,
W = X, i.e. ``model = monai.permute(0, 3, 2, 1)`` and ``model[0, t, h, w] == monai[0, w, h, t]``.
With the default ``orientation="LPS"``: W increases toward the patient's left, H toward posterior,
T toward superior. So ``model[0, t]`` shown with ``imshow`` is an axial slice in the radiological
convention (anterior at the top, patient right on the image's left), and slice 0 is the most
inferior one. The same anatomy gives the same model tensor whatever the stored orientation (RAS,
LPS, sagittal, ...).

**Inverse.** :meth:`PreprocessSpec.invert` undoes the chain with MONAI's invertible transforms
(``Compose.inverse`` over the operations recorded on the MetaTensor): crop/pad undone, resampled back
to the stored voxel grid, orientation undone; then the window is mapped back to HU. Voxels outside
the model's field of view (cropped away) come back as the pad value, i.e. ``window[0]`` HU (air).
Values the window clipped (bone above 1000 HU) cannot be recovered.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ctvl.data.separable import apply_axis_aligned
from ctvl.errors import ConfigError, InputError, check_keys
from ctvl.io.volume import Volume, VolumeMeta

SPEC_VERSION = 1
_KEY = "image"
_AXES = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}


@dataclass(frozen=True)
class PreprocessSpec:
    """How a HU volume becomes a model tensor (and back). Serialisable; store it in checkpoints.

    Attributes:
        orientation: axis codes of MONAI's (X, Y, Z) after reorientation = model (W, H, T).
        spacing: target voxel size in mm along (X, Y, Z) = (W, H, T).
        window: HU range kept; values outside are clipped.
        out_range: values the window maps to.
        size: in-plane model size (H, W).
        depth: fixed slice count T (central crop/pad), or None = keep all slices and pad at the end
            to the next ``1 + depth_multiple * k``.
        depth_multiple: temporal stride of the tokenizer; depths must be ``1 + depth_multiple * k``.
        pad_value: padding in output units (−1 = ``window[0]`` HU = air).
        interpolation: MONAI resampling mode ("bilinear" = trilinear, "nearest").
        antialias: Gaussian-blur axes that are downsampled by factor f (sigma (f − 1) / 2 voxels).
        version: spec format version, bumped when the meaning of a field changes.
    """

    orientation: str = "LPS"  # W → patient left, H → posterior, T → superior
    spacing: tuple[float, float, float] = (0.75, 0.75, 1.5)  # mm along (W, H, T)
    window: tuple[float, float] = (-1000.0, 1000.0)  # HU clip range
    out_range: tuple[float, float] = (-1.0, 1.0)  # window → this range
    size: tuple[int, int] = (512, 512)  # (H, W)
    depth: int | None = 241  # fixed T, or None for "pad to the next 1 + 8k"
    depth_multiple: int = 8  # 8× temporal stride of the tokenizer
    pad_value: float = -1.0  # output units
    interpolation: str = "bilinear"
    antialias: bool = False
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        codes = str(self.orientation).upper()
        if len(codes) != 3 or sorted(_AXES.get(c, -1) for c in codes) != [0, 1, 2]:
            raise ConfigError(f"orientation {self.orientation!r} must be 3 axis codes, one of L/R, P/A, I/S each")
        object.__setattr__(self, "orientation", codes)
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        object.__setattr__(self, "out_range", tuple(float(v) for v in self.out_range))
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ConfigError(f"spacing {self.spacing} must be three positive millimetre values (x, y, z)")
        if len(self.window) != 2 or self.window[0] >= self.window[1]:
            raise ConfigError(f"window {self.window} must be [low, high] HU with low < high")
        if len(self.out_range) != 2 or self.out_range[0] == self.out_range[1]:
            raise ConfigError(f"out_range {self.out_range} must be two different values")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"size {self.size} must be two positive integers (H, W)")
        if self.depth_multiple < 1:
            raise ConfigError(f"depth_multiple {self.depth_multiple} must be >= 1")
        if self.depth is not None and (self.depth < 1 or (self.depth - 1) % self.depth_multiple):
            raise ConfigError(f"depth {self.depth} must be 1 + {self.depth_multiple}k (e.g. 33, 241) or null")
        if self.interpolation not in ("bilinear", "nearest"):
            raise ConfigError(f"interpolation {self.interpolation!r} must be 'bilinear' or 'nearest'")
        if self.version > SPEC_VERSION:
            raise ConfigError(f"spec version {self.version} is newer than this ctvl ({SPEC_VERSION}); upgrade ctvl")

    # ----------------------------------------------------------------------------- presets / io
    @classmethod
    def paper(cls) -> PreprocessSpec:
        """BTB3D / CT-RATE: 0.75 × 0.75 × 1.5 mm, [−1000, 1000] → [−1, 1], 512 × 512 × 241, pad −1."""
        return cls()

    @classmethod
    def cpu(cls) -> PreprocessSpec:
        """CPU-sized: 64 × 64 × 33 at 5.625 × 5.625 × 11.25 mm (a 360 × 360 × 371 mm chest field of view)."""
        return cls(spacing=(5.625, 5.625, 11.25), size=(64, 64), depth=33, antialias=True)

    @classmethod
    def cpu_iso(cls) -> PreprocessSpec:
        """CPU-sized, isotropic: 64 × 64 × 65 at 5.625 mm (the same 360 mm field of view, twice the slices).

        At 11.25 mm neighbouring slices barely agree, which leaves a 3D tokenizer little inter-slice
        redundancy to exploit. ``pipelines/train_tokenizer.py --grid cpu-iso`` trains on this grid; those
        weights are not shipped (the phantom bundle uses :meth:`cpu`; the real-CT bundle 1.5 mm isotropic).
        """
        return cls(spacing=(5.625, 5.625, 5.625), size=(64, 64), depth=65, antialias=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        check_keys(data, cls, "preprocessing spec")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"preprocessing spec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("preprocessing spec JSON must be an object")
        return cls.from_dict(data)

    def hash(self) -> str:
        """16-hex-digit digest of the canonical JSON (cache keys, checkpoint checks)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    # ----------------------------------------------------------------------------- forward
    def apply(self, volume: Volume) -> torch.Tensor:
        """Preprocess ``volume`` (HU, any grid/orientation) into the model tensor.

        Axis-aligned scans take :mod:`ctvl.data.separable` (the same tensor to float32 rounding, without
        importing MONAI, ~25x faster on a 512 x 512 x 241 scan); oblique ones the MONAI chain.

        Returns:
            float32 tensor (1, T, H, W) in ``out_range``; T = ``depth`` or the next 1 + 8k.
        """
        _check_voxels(volume)
        fast = apply_axis_aligned(self, volume)
        return fast if fast is not None else self.apply_with_state(volume)[0]

    def apply_with_state(self, volume: Volume) -> tuple[torch.Tensor, PreprocessState]:
        """Like :meth:`apply`, also returning what :meth:`invert` needs to go back.

        Returns:
            (tensor (1, T, H, W) float32, :class:`PreprocessState`).
        """
        from monai.data import MetaTensor
        from monai.transforms import Compose, SpatialPadd

        data = _check_voxels(volume)
        affine = np.asarray(volume.affine, dtype=np.float64)
        voxels = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None]  # (1, I, J, K)
        image = MetaTensor(voxels, affine=torch.from_numpy(affine.copy()))
        chain = Compose(self._transforms(volume))
        out = chain({_KEY: image})[_KEY]  # (1, X, Y, Z)
        depth_pad = 0
        if self.depth is None:
            z = out.shape[-1]
            target = 1 + self.depth_multiple * math.ceil((z - 1) / self.depth_multiple)
            depth_pad = target - z
            pad = SpatialPadd(
                _KEY,
                spatial_size=(-1, -1, target),
                method="end",
                mode="constant",
                value=self.pad_value,
            )
            out = pad({_KEY: out})[_KEY]
            chain = Compose([*chain.transforms, pad])
        state = PreprocessState(
            spec=self,
            original_shape=volume.shape,
            original_affine=affine.copy(),
            model_affine=out.affine.numpy().copy(),
            model_shape=(1, int(out.shape[3]), int(out.shape[2]), int(out.shape[1])),
            depth_pad_end=depth_pad,
            meta=volume.meta,
            chain=chain,
            operations=copy.deepcopy(list(out.applied_operations)),
        )
        tensor = out.as_tensor().permute(0, 3, 2, 1).contiguous()  # (1, X, Y, Z) → (1, T, H, W)
        return tensor, state

    def _transforms(self, volume: Volume) -> list:
        """The MONAI dictionary transforms for ``volume`` (anti-alias sigmas depend on its spacing)."""
        from monai.transforms import (
            Orientationd,
            ResizeWithPadOrCropd,
            ScaleIntensityRanged,
            Spacingd,
        )

        h, w = self.size
        chain: list = [Orientationd(_KEY, axcodes=self.orientation, labels=None)]
        if self.antialias:
            source = _oriented_spacing(volume, self.orientation)
            sigmas = tuple(max(0.0, (t / s - 1.0) / 2.0) for t, s in zip(self.spacing, source))
            if max(sigmas) >= 0.25:
                # deferred: the antialias transform loads MONAI's full transform stack (about 4 s cold),
                # which specs without anti-aliasing and every importer of this module never need
                from ctvl.data.antialias import GaussianAntiAliasd

                chain.append(GaussianAntiAliasd(keys=_KEY, sigmas=sigmas))
        (a0, a1), (b0, b1) = self.window, self.out_range
        chain += [
            Spacingd(
                _KEY,
                pixdim=self.spacing,
                mode=self.interpolation,
                padding_mode="border",
                dtype=torch.float32,
            ),
            ScaleIntensityRanged(_KEY, a_min=a0, a_max=a1, b_min=b0, b_max=b1, clip=True),
            ResizeWithPadOrCropd(
                _KEY,
                spatial_size=(w, h, self.depth or -1),
                mode="constant",
                value=self.pad_value,
            ),
        ]
        return chain

    # ----------------------------------------------------------------------------- inverse
    def invert(
        self,
        tensor: torch.Tensor | np.ndarray,
        volume_or_state: Volume | PreprocessState,
    ) -> Volume:
        """Put a model-space tensor back on the original voxel grid, in HU, with the original affine.

        Args:
            tensor: (1, T, H, W) or (T, H, W) in ``out_range`` (values outside are clamped), e.g. a
                tokenizer reconstruction.
            volume_or_state: the :class:`PreprocessState` from :meth:`apply_with_state` (cheap), or the
                original :class:`Volume` (the forward chain is re-run once to recover the geometry).
        Returns:
            Volume with data (I, J, K) float32 HU of the original shape and exactly the original affine;
            voxels outside the model's field of view are ``window[0]`` HU.
        """
        from monai.data import MetaTensor

        if isinstance(volume_or_state, PreprocessState):
            state = volume_or_state
        else:
            state = self.apply_with_state(volume_or_state)[1]
        if state.spec != self:
            raise ConfigError("invert() got a state made with a different PreprocessSpec; use the spec stored with it")
        x = torch.as_tensor(tensor).detach().to("cpu", torch.float32)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape) != state.model_shape:
            raise InputError(f"model tensor has shape {tuple(x.shape)}, expected {state.model_shape} (1, T, H, W)")
        lo, hi = sorted(self.out_range)
        x = x.clamp(lo, hi) - self.pad_value  # offset units: MONAI's zero fill becomes the pad value
        x = x.permute(0, 3, 2, 1).contiguous()  # (1, T, H, W) → (1, X, Y, Z)
        image = MetaTensor(x, affine=torch.from_numpy(state.model_affine.copy()))
        image.applied_operations = copy.deepcopy(state.operations)  # MONAI's inverse pops nested records
        back = state.chain.inverse({_KEY: image})[_KEY]  # (1, I, J, K)
        same_affine = np.allclose(back.affine.numpy(), state.original_affine, atol=1e-3)
        if tuple(back.shape[1:]) != state.original_shape or not same_affine:
            raise RuntimeError(f"inverse landed on grid {tuple(back.shape[1:])}, expected {state.original_shape}")
        y = back.as_tensor()[0].numpy() + self.pad_value
        (a0, a1), (b0, b1) = self.window, self.out_range
        hu = (y - b0) / (b1 - b0) * (a1 - a0) + a0
        extra = {**state.meta.extra, "inverted_from_spec": self.to_dict()}
        meta = replace(state.meta, warnings=list(state.meta.warnings), extra=extra)
        return Volume(data=hu.astype(np.float32), affine=state.original_affine.copy(), meta=meta)

    def to_volume(self, tensor: torch.Tensor | np.ndarray, meta: VolumeMeta | None = None) -> Volume:
        """A model-space tensor that has no source scan (e.g. a generated one) as a HU volume on the spec's grid.

        Args:
            tensor: (1, T, H, W) or (T, H, W) in ``out_range`` (values outside are clamped).
            meta: provenance for the volume (default: CT, no source).

        Returns:
            Volume with data (W, H, T) = (X, Y, Z) float32 HU, axes pointing to ``orientation``, voxel size
            ``spacing`` and the grid centred on the world origin (RAS+ affine, nibabel convention).
        """
        x = torch.as_tensor(tensor).detach().to("cpu", torch.float32)
        x = x[0] if x.ndim == 4 else x
        if x.ndim != 3:
            raise InputError(f"model tensor must be (1, T, H, W) or (T, H, W), got shape {tuple(x.shape)}")
        lo, hi = sorted(self.out_range)
        (a0, a1), (b0, b1) = self.window, self.out_range
        hu = (x.clamp(lo, hi).permute(2, 1, 0).numpy() - b0) / (b1 - b0) * (a1 - a0) + a0  # (X, Y, Z)
        world = {
            "R": (0, 1.0),
            "L": (0, -1.0),
            "A": (1, 1.0),
            "P": (1, -1.0),
            "S": (2, 1.0),
            "I": (2, -1.0),
        }
        affine = np.eye(4)
        for k, code in enumerate(self.orientation):
            row, sign = world[code]
            affine[:3, k] = 0.0
            affine[row, k] = sign * float(self.spacing[k])
        affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(hu.shape, dtype=np.float64) - 1) / 2)  # centre at 0
        return Volume(
            data=hu.astype(np.float32),
            affine=affine,
            meta=meta or VolumeMeta(modality="CT"),
        )


@dataclass
class PreprocessState:
    """What :meth:`PreprocessSpec.invert` needs to undo one forward pass (kept in memory, not saved).

    Attributes:
        spec: the spec that produced the tensor.
        original_shape: stored voxel grid (I, J, K) of the input volume.
        original_affine: its (4, 4) voxel→world RAS affine.
        model_affine: (4, 4) voxel→world RAS affine of the model grid, indexed (x, y, z) = (w, h, t).
        model_shape: (1, T, H, W) of the model tensor.
        depth_pad_end: slices added at the end by the "next 1 + 8k" rule (0 for a fixed depth).
        meta: the input volume's metadata (copied to the inverted volume).
        chain: the MONAI Compose that ran (its transform instances own the recorded operations).
        operations: MONAI ``applied_operations`` recorded by the forward pass.
    """

    spec: PreprocessSpec
    original_shape: tuple[int, int, int]
    original_affine: np.ndarray
    model_affine: np.ndarray
    model_shape: tuple[int, int, int, int]
    depth_pad_end: int
    meta: VolumeMeta
    chain: Any = field(repr=False)
    operations: list = field(repr=False, default_factory=list)


def _check_voxels(volume: Volume) -> np.ndarray:
    """The volume's data (I, J, K); a one-line :class:`InputError` if it is not 3D or not finite."""
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise InputError(
            f"expected a 3D volume, got shape {data.shape}",
            path=volume.meta.source or None,
        )
    if not np.isfinite(data).all():
        raise InputError("volume contains NaN or infinite voxels", path=volume.meta.source or None)
    return data


def _oriented_spacing(volume: Volume, codes: str) -> tuple[float, float, float]:
    """Voxel size (mm) along the reoriented (X, Y, Z) axes, i.e. after ``Orientationd(codes)``."""
    import nibabel as nib

    o = nib.orientations
    ornt = o.ornt_transform(o.io_orientation(volume.affine), o.axcodes2ornt(tuple(codes)))
    out = [0.0, 0.0, 0.0]
    for src_axis, (dst_axis, _) in enumerate(ornt):
        out[int(dst_axis)] = volume.spacing[src_axis]
    return tuple(out)  # type: ignore[return-value]
