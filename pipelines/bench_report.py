"""Latency of ``ctvl report`` on a 512 x 512 x 241 NIfTI with 2 threads, with an in-run baseline; prints JSON.

    python pipelines/bench_report.py                       # default bundle, phantom scan, 2 threads
    python pipelines/bench_report.py --scan my_ct.nii.gz --model runs/report-phantom-cpu/bundle

Measured in fresh processes (``OMP_NUM_THREADS`` = ``MKL_NUM_THREADS`` = ``--threads``), each ``--repeats``
times, median reported:

* ``cli_report_s``       wall time of ``ctvl report SCAN --json`` (Python start, imports, model load, read,
                         preprocessing, tokens, generation, labeler): what a user waits for;
* ``cli_encode_s``       baseline in the same run: ``ctvl encode SCAN`` with the bundle's tokenizer (the same
                         read, preprocessing and tokens, no LM), so ``cli_report_s - cli_encode_s`` is the cost
                         of the report model itself;
* ``stages``             one in-process pass broken down: load, read, preprocess, encode, generate, label.

The default scan is a phantom chest CT rendered at 512 x 512 x 241 (0.75 x 0.75 x 1.5 mm, the paper's grid),
written once to ``runs/bench/phantom-512x512x241.nii.gz``. Target: ``cli_report_s`` <= 20 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 20.0
SHAPE = (512, 512, 241)


def ensure_scan(path: Path) -> float:
    """Render the 512 x 512 x 241 phantom to ``path`` unless it exists; returns seconds spent."""
    if path.is_file():
        return 0.0
    from ctvl.data.phantom import render_case
    from ctvl.io.nifti import write_nifti

    began = time.perf_counter()
    print(f"rendering a {SHAPE} phantom to {path} (once)", file=sys.stderr, flush=True)
    case = render_case(0, shape=SHAPE, spacing=(0.75, 0.75, 1.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(case.volume, path, dtype="int16")
    return time.perf_counter() - began


def stages(scan: str, model: str | None, threads: int) -> dict[str, Any]:
    """One in-process pass, timed stage by stage (run in a fresh worker process)."""
    import torch

    torch.set_num_threads(threads)
    t = {}
    began = time.perf_counter()
    from ctvl.report.bundle import load_report_model
    from ctvl.report.generate import ReportGenerator, read_scan
    from ctvl.tokenizers.causal3d.inference import encode_tensor, preprocess

    t["import_s"] = time.perf_counter() - began
    mark = time.perf_counter()
    loaded = load_report_model(model)
    gen = ReportGenerator(loaded)
    t["load_model_s"], mark = time.perf_counter() - mark, time.perf_counter()
    volume = read_scan(scan)
    t["read_s"], mark = time.perf_counter() - mark, time.perf_counter()
    codes = None
    if loaded.visual:
        x, _ = preprocess(loaded.tokenizer, volume)
        t["preprocess_s"], mark = time.perf_counter() - mark, time.perf_counter()
        codes = encode_tensor(loaded.tokenizer, x).codes[0]
        t["encode_s"], mark = time.perf_counter() - mark, time.perf_counter()
    report = gen.from_codes([codes], [gen.scan_warnings(volume)])[0]
    t["generate_and_label_s"] = time.perf_counter() - mark
    t["total_s"] = time.perf_counter() - began
    return {"stages": {k: round(v, 3) for k, v in t.items()}, "report_words": len(report.text.split()),
            "visual_tokens": None if codes is None else list(codes.shape), "scan_shape": list(volume.shape)}


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return seconds, proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, default=REPO / "runs" / "bench" / "phantom-512x512x241.nii.gz")
    parser.add_argument("--model", type=str, default=None, help="report bundle (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(stages(str(args.scan), args.model, args.threads)))
        return 0
    from ctvl.report.bundle import DEFAULT_BUNDLE, TOKENIZER_DIR

    render_s = ensure_scan(args.scan)
    model = Path(args.model) if args.model else DEFAULT_BUNDLE
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    ctvl = [sys.executable, "-m", "ctvl"]
    report_s, encode_s = [], []
    out_tokens = REPO / "runs" / "bench" / "bench-tokens.safetensors"
    for _ in range(args.repeats):
        seconds, stdout = _timed([*ctvl, "report", str(args.scan), "--json", "--model", str(model)], env)
        report_s.append(seconds)
        result = json.loads(stdout)
        if (model / TOKENIZER_DIR).is_dir():
            encode_s.append(_timed([*ctvl, "encode", str(args.scan), "-o", str(out_tokens), "--model",
                                    str(model / TOKENIZER_DIR)], env)[0])
    out_tokens.unlink(missing_ok=True)
    worker = [sys.executable, str(Path(__file__).resolve()), "--worker", "--scan", str(args.scan),
              "--threads", str(args.threads)] + (["--model", str(model)] if args.model else [])
    detail = json.loads(_timed(worker, env)[1])
    median_report = statistics.median(report_s)
    out = {
        "benchmark": "ctvl report latency",
        "scan": {"path": str(args.scan), "shape": detail["scan_shape"], "bytes": args.scan.stat().st_size,
                 "render_s": round(render_s, 1)},
        "model": str(model),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "cli_report_s": round(median_report, 2),
        "cli_report_runs_s": [round(s, 2) for s in report_s],
        "baseline_cli_encode_s": round(statistics.median(encode_s), 2) if encode_s else None,
        "report_model_overhead_s": round(median_report - statistics.median(encode_s), 2) if encode_s else None,
        "in_process": detail,
        "report_words": len(result["report"].split()),
        "warnings": result["warnings"],
        "target_s": TARGET_S,
        "meets_target": median_report <= TARGET_S,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
