"""Tokenize a CT scan and reconstruct it on its own grid: the library behind ``ctvl encode`` / ``ctvl reconstruct``.

Path of a scan: ``read_volume`` (HU, any grid) -> the bundle's :class:`PreprocessSpec` (never a default) ->
(1, 1, T, H, W) in [-1, 1] -> windowed encode (memory flat in depth) -> tokens -> streaming decode (memory
flat in depth, equal to the one-shot decode) -> ``spec.invert`` -> HU on the original voxel grid with the
original affine.

A token file (safetensors) holds ``indices`` (t, h, w) int32 and ``codes`` (D, t, h, w) float32, and as
string metadata: the format, the preprocessing spec, the model-space shape (T, H, W), the source geometry
(path, shape, affine, spacing, axis codes) and the tokenizer's id, kind and compression. That is enough to
put a reconstruction back on the source grid without the scan (:func:`reconstruct_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctvl.atomic import atomic_file
from ctvl.data.transforms import PreprocessSpec, PreprocessState
from ctvl.errors import CtvlError, InputError
from ctvl.io.volume import Volume, VolumeMeta
from ctvl.tokenizers.causal3d.bundle import LoadedTokenizer
from ctvl.tokenizers.causal3d.model import Tokens

TOKENS_FORMAT = "ctvl-tokens-1"


@dataclass
class EncodedScan:
    """Tokens of one scan and everything needed to decode them back onto its grid.

    Attributes:
        indices: (t, h, w) int32 token indices.
        codes: (D, t, h, w) float32 quantized latents.
        model_shape: (T, H, W) of the preprocessed tensor the tokens encode.
        spec: the preprocessing spec used.
        source: ``{"path", "shape", "affine", "spacing", "axcodes"}`` of the scan.
        tokenizer: ``{"id", "kind", "compression", "codebook_size", "stage", "bundle"}``.
    """

    indices: torch.Tensor
    codes: torch.Tensor
    model_shape: tuple[int, int, int]
    spec: PreprocessSpec
    source: dict[str, Any]
    tokenizer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reconstruction:
    """Result of :func:`reconstruct`: the HU volume on the source grid and the model-space tensors."""

    volume: Volume  # (I, J, K) HU, source grid and affine
    model_input: torch.Tensor  # (1, T, H, W) preprocessed scan
    model_recon: torch.Tensor  # (1, T, H, W) tokenizer reconstruction, same space
    tokens: EncodedScan


def tokenizer_info(tok: LoadedTokenizer) -> dict[str, Any]:
    """Identity of a tokenizer as stored in token files."""
    return {
        "id": tok.tokenizer_id,
        "kind": tok.kind,
        "compression": tok.model.config.compression,
        "codebook_size": int(getattr(tok.model.quantizer, "codebook_size", 0)),
        "stage": tok.stage,
        "bundle": str(tok.source),
    }


def geometry(volume: Volume) -> dict[str, Any]:
    """Source geometry of a volume (JSON-able)."""
    return {
        "path": volume.meta.source,
        "shape": list(volume.shape),
        "affine": np.asarray(volume.affine, dtype=np.float64).tolist(),
        "spacing": list(volume.spacing),
        "axcodes": volume.axcodes,
    }


def preprocess(tok: LoadedTokenizer, volume: Volume) -> tuple[torch.Tensor, PreprocessState]:
    """The bundle's preprocessing: (1, 1, T, H, W) model input and the state :meth:`PreprocessSpec.invert` needs."""
    x, state = tok.spec.apply_with_state(volume)  # (1, T, H, W)
    return x[None], state


def encode_tensor(tok: LoadedTokenizer, x: torch.Tensor, chunk: int = 1) -> Tokens:
    """Windowed (stage-2) encode of a model-space tensor (1, 1, T, H, W); memory flat in depth."""
    device = next(tok.model.parameters()).device
    return tok.model.encode(x.to(device), mode=tok.encode_mode, chunk=chunk)


def _encoded(tok: LoadedTokenizer, x: torch.Tensor, volume: Volume, chunk: int) -> EncodedScan:
    tokens = encode_tensor(tok, x, chunk)
    return EncodedScan(
        indices=tokens.indices[0].to("cpu", torch.int32),  # (t, h, w)
        codes=tokens.codes[0].to("cpu", torch.float32),  # (D, t, h, w)
        model_shape=tuple(int(s) for s in x.shape[2:]),  # type: ignore[arg-type]
        spec=tok.spec,
        source=geometry(volume),
        tokenizer=tokenizer_info(tok),
    )


def encode_scan(tok: LoadedTokenizer, volume: Volume, chunk: int = 1) -> EncodedScan:
    """Tokenize a HU volume with the bundle's preprocessing.

    Args:
        tok: a loaded tokenizer (:func:`~ctvl.tokenizers.causal3d.bundle.load_tokenizer`).
        volume: the scan (any grid / orientation).
        chunk: stage-2 windows per encoder call.
    """
    return _encoded(tok, tok.spec.apply(volume)[None], volume, chunk)  # no inverse needed: the fast path


def decode_scan(tok: LoadedTokenizer, encoded: EncodedScan, chunk_latents: int = 1) -> torch.Tensor:
    """Streaming decode of tokens to the model-space tensor (1, T, H, W).

    Raises:
        InputError: the tokens were made by a different tokenizer or preprocessing.
    """
    made_by = encoded.tokenizer.get("id")
    if made_by and made_by != tok.tokenizer_id:
        raise InputError(
            f"the tokens were made by tokenizer {made_by} ({encoded.tokenizer.get('bundle')}), not by "
            f"{tok.tokenizer_id} ({tok.source}); pass --model with the bundle that encoded them"
        )
    if encoded.spec != tok.spec:
        raise InputError(
            "the tokens were preprocessed with a different spec than this tokenizer's; "
            "pass --model with the bundle that encoded them"
        )
    device = next(tok.model.parameters()).device
    codes = encoded.codes[None].to(device)  # (1, D, t, h, w)
    recon = tok.model.decode(codes, shape=encoded.model_shape, chunk_latents=chunk_latents)  # (1, 1, T, H, W)
    return recon[0].to("cpu")


def reconstruct(tok: LoadedTokenizer, volume: Volume, chunk: int = 1) -> Reconstruction:
    """Encode and decode a scan and put the reconstruction back on its grid, in HU, with its affine."""
    x, state = preprocess(tok, volume)
    encoded = _encoded(tok, x, volume, chunk)
    recon = decode_scan(tok, encoded)  # (1, T, H, W)
    return Reconstruction(tok.spec.invert(recon, state), x[0], recon, encoded)


def reconstruct_tokens(tok: LoadedTokenizer, encoded: EncodedScan) -> Volume:
    """Decode a token file's tokens back onto the source grid stored with them (the scan is not needed).

    The preprocessing geometry is recovered by running the spec on an empty volume of the stored shape
    and affine (only the grid matters for the inverse).
    """
    shape = tuple(int(s) for s in encoded.source["shape"])
    affine = np.asarray(encoded.source["affine"], dtype=np.float64)
    blank = Volume(np.zeros(shape, np.float32), affine, VolumeMeta(source=str(encoded.source.get("path", ""))))
    _, state = encoded.spec.apply_with_state(blank)
    if tuple(state.model_shape[1:]) != tuple(encoded.model_shape):
        raise InputError(
            f"token file geometry gives a model grid {state.model_shape[1:]}, but the tokens encode "
            f"{encoded.model_shape}; the file is inconsistent"
        )
    return encoded.spec.invert(decode_scan(tok, encoded), state)


def save_tokens(encoded: EncodedScan, path: str | Path) -> Path:
    """Write a token file (safetensors; see the module docstring) atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError("token files end in .safetensors; choose another -o", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": TOKENS_FORMAT,
        "preprocessing": encoded.spec.to_json(),
        "model_shape": json.dumps(list(encoded.model_shape)),
        "source": json.dumps(encoded.source),
        "tokenizer": json.dumps(encoded.tokenizer),
    }
    tensors = {"indices": encoded.indices.contiguous(), "codes": encoded.codes.contiguous()}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_tokens(path: str | Path) -> EncodedScan:
    """Read a token file written by :func:`save_tokens`.

    Raises:
        InputError: not a ctvl token file, or corrupt.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError("token file not found", path=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iteration
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"not a readable safetensors file ({type(exc).__name__})", path=path) from None
    if meta.get("format") != TOKENS_FORMAT or "codes" not in tensors or "indices" not in tensors:
        raise InputError(f"not a ctvl token file (expected format {TOKENS_FORMAT} written by `ctvl encode`)", path=path)
    try:
        return EncodedScan(
            indices=tensors["indices"],
            codes=tensors["codes"].float(),
            model_shape=tuple(json.loads(meta["model_shape"])),
            spec=PreprocessSpec.from_json(meta["preprocessing"]),
            source=json.loads(meta["source"]),
            tokenizer=json.loads(meta.get("tokenizer", "{}")),
        )
    except (KeyError, ValueError, TypeError, CtvlError) as exc:
        raise InputError(f"token file metadata is incomplete or invalid ({type(exc).__name__})", path=path) from None
