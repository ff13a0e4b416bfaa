"""ctvl.io: read CT volumes (NIfTI, NRRD, MetaImage, DICOM folder / .zip / .dcm) in HU and write NIfTI.

>>> from ctvl.io import read_volume, info   # doctest: +SKIP
>>> vol = read_volume("scan.nii.gz")        # Volume: data (I, J, K) float32 HU, RAS+ affine, meta
"""

from ctvl.io.info import info
from ctvl.io.nifti import write_nifti
from ctvl.io.read import DEFAULT_MAX_VOXELS, read_volume
from ctvl.io.volume import Volume, VolumeMeta

__all__ = ["DEFAULT_MAX_VOXELS", "Volume", "VolumeMeta", "info", "read_volume", "write_nifti"]
