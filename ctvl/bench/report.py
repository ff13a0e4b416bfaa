"""``ctvl bench report``: how long a user waits for a report, cold (a fresh ``ctvl report``) and warm (a
loaded model, as in the viewer or the Python API), each beside a baseline measured in the same run.

The ctvl modules a measurement times are imported inside its functions, never at the top: importing
this module must not pay the cost being measured.

Every measurement runs in a fresh Python process with ``OMP_NUM_THREADS`` = ``MKL_NUM_THREADS`` =
``threads``, ``repeats`` times; medians are reported:

* ``cold_report_s``    wall time of ``ctvl report SCAN --json``: Python start, imports, model load, read,
                       preprocessing, tokens, generation, labeler;
* ``baseline_read_s``  a bare read of the same file with nibabel (``get_fdata``) in a fresh process: the floor
                       any tool that opens the file pays (the comparison the issue names);
* ``import_floor_s``   ``import torch`` + ``from transformers import LlamaForCausalLM`` in a fresh process that
                       then leaves as ``ctvl`` does (``os._exit``, no module teardown): start-up that ctvl
                       cannot shorten, since the report LM is a transformers model;
* ``warm_report_s``    :func:`ctvl.report.generate.generate_report` on the scan with the model already loaded
                       (read, preprocessing, tokens, generation, labeler), with its stages timed once.

Targets (issue 13): cold <= 5 s and warm <= 1.5 s for a 512 x 512 x 241 NIfTI on 2 cores; ``meets`` says which
hold. The default scan is a phantom chest CT at the paper's grid (0.75 x 0.75 x 1.5 mm), rendered once to
``runs/bench/phantom-512x512x241.nii.gz``.
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

from ctvl.errors import InputError

COLD_TARGET_S = 5.0
WARM_TARGET_S = 1.5
SHAPE = (512, 512, 241)
DEFAULT_SCAN = Path("runs/bench/phantom-512x512x241.nii.gz")
_READ = "import sys, nibabel; nibabel.load(sys.argv[1]).get_fdata()"
_IMPORTS = "import os, torch; from transformers import LlamaForCausalLM; os._exit(0)"


def ensure_scan(path: Path) -> float:
    """Render the 512 x 512 x 241 phantom to ``path`` unless it exists; returns the seconds spent."""
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


def warm(scan: str, model: str | None, threads: int, repeats: int) -> dict[str, Any]:
    """In this process: load the model once, then time ``repeats`` reports and one pass stage by stage."""
    import torch

    torch.set_num_threads(threads)
    from ctvl.eval.labeler import ReportLabeler
    from ctvl.report.bundle import load_report_model
    from ctvl.report.generate import ReportGenerator, generate_report, read_scan

    began = time.perf_counter()
    loaded = load_report_model(model)
    load_s = time.perf_counter() - began
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        generate_report(scan, loaded, labeler=ReportLabeler())
        runs.append(time.perf_counter() - began)
    gen = ReportGenerator(loaded=loaded, labeler=ReportLabeler())
    t: dict[str, float] = {}
    mark = time.perf_counter()
    volume = read_scan(scan)
    t["read_s"], mark = time.perf_counter() - mark, time.perf_counter()
    prepared = gen.model_space(volume)  # None unless the tokens and a voxel diagnosis share it
    codes, probs = gen.encode(volume, prepared), gen.diagnose(volume, prepared)
    t["preprocess_encode_and_diagnose_s"], mark = time.perf_counter() - mark, time.perf_counter()
    report = gen.from_codes([codes], [gen.scan_warnings(volume)], [probs])[0]
    t["generate_and_label_s"] = time.perf_counter() - mark
    return {
        "load_model_s": round(load_s, 3),
        "runs_s": [round(s, 3) for s in runs],
        "stages": {k: round(v, 3) for k, v in t.items()},
        "report_words": len(report.text.split()),
        "visual_tokens": None if codes is None else list(codes.shape),
        "scan_shape": list(volume.shape),
    }


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    began = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise InputError(f"benchmark step failed: {' '.join(cmd[:4])} ...: {tail}")
    return seconds, proc.stdout


def run_benchmark(
    scan: Path = DEFAULT_SCAN, model: Path | None = None, threads: int = 2, repeats: int = 3
) -> dict[str, Any]:
    """Cold and warm report latency with their baselines; returns the JSON-ready result."""
    if not scan.exists() and scan != DEFAULT_SCAN:
        raise InputError("scan not found; pass a NIfTI / DICOM / NRRD / MHA path or leave --scan out", path=scan)
    render_s = ensure_scan(scan)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    py = sys.executable
    with_model = ["--model", str(model)] if model is not None else []
    cold, read, imports = [], [], []
    for _ in range(repeats):  # interleaved, so a slow moment of the machine hits all three alike
        read.append(_timed([py, "-c", _READ, str(scan)], env)[0])
        imports.append(_timed([py, "-c", _IMPORTS], env)[0])
        seconds, stdout = _timed([py, "-m", "ctvl", "report", str(scan), "--json", *with_model], env)
        cold.append(seconds)
    result = json.loads(stdout)
    worker = [
        py,
        "-m",
        "ctvl.bench.report",
        "--worker",
        "--scan",
        str(scan),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
        *with_model,
    ]
    detail = json.loads(_timed(worker, env)[1])
    cold_s, warm_s = statistics.median(cold), statistics.median(detail["runs_s"])
    return {
        "benchmark": "ctvl report latency",
        "scan": {
            "path": str(scan),
            "shape": detail["scan_shape"],
            "bytes": scan.stat().st_size,
            "render_s": round(render_s, 1),
        },
        "model": str(model) if model is not None else "shipped report bundle",
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "cold_report_s": round(cold_s, 2),
        "cold_runs_s": [round(s, 2) for s in cold],
        "baseline_read_s": round(statistics.median(read), 2),
        "cold_over_read": round(cold_s / statistics.median(read), 2),
        "import_floor_s": round(statistics.median(imports), 2),
        "warm_report_s": round(warm_s, 2),
        "warm": detail,
        "report_words": len(result["report"].split()),
        "targets_s": {"cold": COLD_TARGET_S, "warm": WARM_TARGET_S},
        "meets": {"cold": cold_s <= COLD_TARGET_S, "warm": warm_s <= WARM_TARGET_S},
    }


def _worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--scan", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(warm(args.scan, args.model, args.threads, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
