"""NIfTI reading and writing with nibabel."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from ctvl.io.volume import Volume


def write_nifti(volume: Volume, path: str | Path, dtype: str = "float32") -> Path:
    """Write ``volume`` to ``path`` (.nii or .nii.gz) atomically.

    The affine is written to both qform and sform so it round-trips exactly; values are stored
    unscaled (slope 1, intercept 0) as ``dtype`` ("float32" keeps every value; "int16" rounds HU).

    Args:
        volume: the volume; ``volume.data`` is (I, J, K) HU.
        path: destination file.
        dtype: on-disk voxel type.
    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(volume.data)
    if dtype == "int16":
        data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    else:
        data = data.astype(np.dtype(dtype), copy=False)
    img = nib.Nifti1Image(data, np.asarray(volume.affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent, prefix=".tmp-")
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
