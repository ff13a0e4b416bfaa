"""Gaussian anti-aliasing before a downsampling resample, as a MONAI dictionary transform.

In its own module so that importing :mod:`ctvl.data.transforms` does not import MONAI (whose
``__init__`` loads every submodule); only the MONAI chain of :class:`PreprocessSpec` needs it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform


class GaussianAntiAliasd(MapTransform):
    """Gaussian blur per axis before downsampling, with replicate ("nearest") borders.

    Written here because MONAI's ``GaussianSmoothd`` pads with zeros (0 HU = water would bleed into
    the edges of the field of view) and, as a conv3d, needs many times the volume's memory for wide
    kernels; ``scipy.ndimage.gaussian_filter`` filters line by line in place of that. Not invertible
    on purpose: ``Compose.inverse`` skips it.
    """

    def __init__(self, *, keys: Hashable | Sequence[Hashable], sigmas: Sequence[float]) -> None:
        super().__init__(keys)
        self.sigmas = tuple(float(s) if s >= 0.25 else 0.0 for s in sigmas)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        from monai.utils import convert_to_dst_type
        from scipy.ndimage import gaussian_filter

        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]  # (C, X, Y, Z)
            arr = np.asarray(torch.as_tensor(img).detach().cpu().numpy(), dtype=np.float32)
            blurred = gaussian_filter(arr, sigma=(0.0, *self.sigmas), mode="nearest", truncate=3.0)
            d[key] = convert_to_dst_type(torch.from_numpy(blurred), img)[0]  # keeps the affine and history
        return d
