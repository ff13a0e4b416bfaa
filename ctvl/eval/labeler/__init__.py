"""Report labeler: free-text chest CT reports → the 18 CT-RATE labels, offline and deterministic.

Rule-based: sentence splitting (:mod:`.text`), a hand-written lexicon per label (:mod:`.lexicon`) and
NegEx-style negation/uncertainty scopes (:mod:`.negation`). See ``docs/labeler.md`` for the method,
the measured accuracy on manually labelled CT-RATE reports and on phantom reports, and the licence.
"""

from ctvl.eval.labeler.core import Mention, ReportLabeler, label_reports, sentence_mentions
from ctvl.eval.labeler.csvio import ReportTable, read_labels, read_reports, write_labels

__all__ = [
    "Mention",
    "ReportLabeler",
    "ReportTable",
    "label_reports",
    "read_labels",
    "read_reports",
    "sentence_mentions",
    "write_labels",
]
