"""Feature networks trained by ctvl on phantoms, and the synthesis metrics built on them.

- the networks themselves, :class:`CTNet3D` (3D classifier of the 18 labels) and :class:`SliceNet2D`, and
  their training live in :mod:`ctvl.classify` (the report model's diagnosis uses them too); re-exported here.
- :mod:`~ctvl.eval.features.bundle`: :func:`save_feature_nets`, :func:`load_feature_nets` (:class:`FeatureNets`).
- :mod:`~ctvl.eval.features.frechet`: :func:`frechet_distance`, :func:`fd_3d`, :func:`fid_2p5d`.
- :mod:`~ctvl.eval.features.consistency`: :func:`label_consistency`, :func:`memorization`.
- :mod:`~ctvl.eval.features.voxels`: :func:`model_space_volumes` (cached preprocessing of records).
"""

from ctvl.classify.extract import PLANES, plane_slices, predict_labels, slice_features, volume_features
from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.classify.train import TrainResult, train_classifier, train_slice_net
from ctvl.eval.features.bundle import DEFAULT_BUNDLE, FeatureNets, load_feature_nets, save_feature_nets
from ctvl.eval.features.consistency import label_consistency, memorization, nearest_rmse
from ctvl.eval.features.frechet import fd_3d, fid_2p5d, frechet_distance
from ctvl.eval.features.voxels import model_space_volumes

__all__ = [
    "CTNet3D",
    "DEFAULT_BUNDLE",
    "FeatureNetConfig",
    "FeatureNets",
    "PLANES",
    "SliceNet2D",
    "TrainResult",
    "fd_3d",
    "fid_2p5d",
    "frechet_distance",
    "label_consistency",
    "load_feature_nets",
    "memorization",
    "model_space_volumes",
    "nearest_rmse",
    "plane_slices",
    "predict_labels",
    "save_feature_nets",
    "slice_features",
    "train_classifier",
    "train_slice_net",
    "volume_features",
]
