"""Label classifiers of model-space CT volumes: a 3D CNN of the 18 CT-RATE labels and a 2D slice network.

Two packages use them, so they sit below both:

- the report model's **diagnosis** (:mod:`ctvl.report.diagnosis`): a 3D classifier reading the scan's
  voxels tells the diagnosis prompt which findings are present;
- the synthesis **metrics** (:mod:`ctvl.eval.features`): the same kind of nets, trained separately, judge
  generated volumes (Fréchet distances, label consistency).

- :mod:`~ctvl.classify.nets`: :class:`CTNet3D`, :class:`SliceNet2D`, :class:`FeatureNetConfig`.
- :mod:`~ctvl.classify.train`: :func:`train_classifier`, :func:`train_slice_net`, :func:`choose_thresholds`.
- :mod:`~ctvl.classify.extract`: batched, memory-bounded features, logits and labels.
"""

from ctvl.classify.extract import PLANES, plane_slices, predict_labels, slice_features, volume_features, volume_logits
from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.classify.train import TrainResult, choose_thresholds, train_classifier, train_slice_net

__all__ = [
    "CTNet3D",
    "FeatureNetConfig",
    "PLANES",
    "SliceNet2D",
    "TrainResult",
    "choose_thresholds",
    "plane_slices",
    "predict_labels",
    "slice_features",
    "train_classifier",
    "train_slice_net",
    "volume_features",
    "volume_logits",
]
