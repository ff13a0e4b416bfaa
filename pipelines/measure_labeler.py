"""Measure the ctvl report labeler and print JSON.

* On the 800 manually labelled CT-RATE reports (``../shared/data/reports/ctrate_manual_train.csv``,
  CC BY-NC-SA 4.0, not shipped): macro/micro/weighted F1 and per-label F1 on the fixed held-out split
  (never read while the rules were written) and on the development split. Skipped, with the reason
  in the JSON, when the file is absent.
* On phantom reports (``ctvl.data.phantom``): the same metrics against the phantom's ground truth.

Usage: ``python pipelines/measure_labeler.py [--csv PATH] [--phantoms N]``. The numbers go into
``docs/labeler.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO / ".." / "shared" / "data" / "reports" / "ctrate_manual_train.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="manually labelled reports CSV")
    parser.add_argument("--phantoms", type=int, default=200, help="number of phantom reports (seeds 0..N-1)")
    args = parser.parse_args(argv)

    from ctvl.eval.labeler.validation import measure_on_csv, measure_on_phantoms

    out: dict = {}
    if args.csv.is_file():
        out["ctrate_manual"] = measure_on_csv(args.csv)
    else:
        out["ctrate_manual"] = {"skipped": f"{args.csv} not found (shared data absent)"}
    if args.phantoms > 0:
        out["phantom"] = measure_on_phantoms(list(range(args.phantoms)))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
