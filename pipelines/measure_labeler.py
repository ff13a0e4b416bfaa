"""Measure the ctvl report labeler the way CT-RATE reports its classifier, and print JSON.

* On the 800 manually labelled CT-RATE reports (``../shared/data/reports/ctrate_manual_train.csv``,
  CC BY-NC-SA 4.0, not shipped): cells and reports that differ from the manual labels, macro and micro
  F1, each with a 95% bootstrap interval over reports, on all reports, on the fixed held-out split (never
  read while the rules were written) and on the development split, plus the per-fold spread of a
  k-fold split. With ``--learned`` the MiniLM layer (``ctvl.eval.labeler.learned``) is scored by k-fold
  cross-validation over the 800 (out-of-fold predictions only). Skipped, with the reason in the JSON,
  when the file is absent.
* Speeds: the rule labeler cold and warm on one core; the learned layer uncached.
* On phantom reports (``ctvl.data.phantom``): the same metrics against the phantom's ground truth.
* ``--errors FILE`` writes every remaining disagreement with the sentence(s) that decided it. It quotes
  CT-RATE report text (CC BY-NC-SA 4.0): keep it outside the repository.

Usage: ``python pipelines/measure_labeler.py [--csv PATH] [--k 5] [--learned] [--errors FILE]
[--phantoms N]``. The numbers go into ``docs/labeler.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO / ".." / "shared" / "data" / "reports" / "ctrate_manual_train.csv"
DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/ctvl/labeler_minilm_ctrate_sentences.npz"))


def _brief(summary: dict) -> dict:
    keys = (
        "n_reports",
        "cell_disagreement_pct",
        "cell_disagreement_pct_95ci",
        "report_disagreement_pct",
        "report_disagreement_pct_95ci",
        "macro_f1",
        "macro_f1_95ci",
        "micro_f1",
        "micro_f1_95ci",
        "min_label",
        "min_label_f1",
    )
    return {k: summary[k] for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="manually labelled reports CSV")
    parser.add_argument("--k", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--learned", action="store_true", help="also cross-validate the MiniLM learned layer")
    parser.add_argument("--mode", default="hybrid", choices=("hybrid", "learned"), help="learned layer decision")
    parser.add_argument("--C", type=float, default=4.0, help="learned layer: inverse L2 strength")
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="sentence embedding cache (outside the repo: it derives from CT-RATE text)",
    )
    parser.add_argument("--errors", type=Path, default=None, help="write the disagreements (with sentences) here")
    parser.add_argument("--full", action="store_true", help="print per-label F1 and error counts too")
    parser.add_argument("--phantoms", type=int, default=200, help="number of phantom reports (seeds 0..N-1)")
    args = parser.parse_args(argv)

    from ctvl.eval.labeler.validation import measure_agreement, measure_on_phantoms

    out: dict = {}
    if args.csv.is_file():
        res = measure_agreement(
            args.csv,
            k=args.k,
            learned=args.learned,
            learned_options={"C": args.C, "mode": args.mode},
            embedding_cache=args.embedding_cache if args.learned else None,
        )
        found = res.pop("disagreements")
        for name in ("rules", "learned"):
            if name not in res:
                continue
            part = res[name]
            for split in ("all", "held_out", "development"):
                part[split] = part[split] if args.full else _brief(part[split])
            part["n_disagreements"] = len(found[name])
            part["disagreements_without_evidence"] = sum(1 for d in found[name] if not d["evidence"])
        if args.errors is not None:
            args.errors.parent.mkdir(parents=True, exist_ok=True)
            args.errors.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
            res["errors_written_to"] = str(args.errors)
        out["ctrate_manual"] = res
    else:
        out["ctrate_manual"] = {"skipped": f"{args.csv} not found (shared data absent)"}
    if args.phantoms > 0:
        phantom = measure_on_phantoms(list(range(args.phantoms)))
        out["phantom"] = {k: phantom[k] for k in ("n_reports", "macro_f1", "micro_f1", "n_errors", "errors")}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
