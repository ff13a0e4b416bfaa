"""``ctvl bench tokenizer``: peak memory and time of the causal 3D tokenizer's encode and decode vs depth.

Operations, each at every depth, each in a **fresh Python process** (``python -m ctvl.bench.tokenizer
--worker ...``) so one measurement's allocator state never leaks into the next:

* ``encode``          windowed encode (stage-2 tiling, the inference path) of a (1, 1, T, S, S) volume;
* ``decode``          streaming decode with a causal cache, chunks of one latent frame written to a file as
                      they come (like a slab-by-slab writer), so the output is never held whole;
* ``decode_oneshot``  the reference's one-shot decode of the whole latent (the in-run baseline).

Memory: torch allocates outside Python's allocator, so ``tracemalloc`` sees nothing; the kernel's resident
set is measured instead. Right before the operation the process' RSS high-water mark is reset
(``/proc/self/clear_refs`` = 5, Linux >= 4.0) and the current RSS read; ``peak_mb`` = high water during the
operation (``VmHWM``) - RSS before = the operation's working memory on top of the model and the input
already in memory. Without ``/proc`` the fallback is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (then an
earlier, higher peak would hide the operation's: the JSON says which source was used). Ratios compare the
deepest with the shallowest depth; the target is <= 1.15 for encode and decode.

Allocator: glibc raises its mmap threshold dynamically after large blocks are freed, after which freed
activation blocks stay in the heap and fragment it; the RSS high water then drifts up with the number of
windows (measured: +50 MB at 321 vs 65 slices at 256 x 256 with the heap, +2 MB with a fixed threshold)
although the live tensors do not grow. Each worker therefore runs with ``MALLOC_MMAP_THRESHOLD_=131072``
(a fixed threshold: blocks >= 128 KiB are mapped and returned on free), so RSS follows the live tensors; the
same setting applies to every operation, the one-shot baseline included, and the JSON records it.

Weights do not change memory or time: the shipped bundle is used when present, random CPU-sized weights
otherwise (``--arch cpu``); ``--arch paper`` measures the paper-sized model (96 filters, 2^18 LFQ), which at
512 x 512 takes very long on a CPU (use a GPU machine for it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ctvl.errors import ConfigError

OPS = ("encode", "decode", "decode_oneshot")
MB = 2**20
TARGET_RATIO = 1.15
MMAP_THRESHOLD = 131072  # bytes; fixed glibc mmap threshold of the workers


def parse_depths(text: str) -> list[int]:
    """``"65,321"`` -> [65, 321]; ConfigError for anything but positive integers."""
    try:
        depths = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ConfigError(f"--depths must be comma-separated integers, got {text!r}") from None
    if not depths or min(depths) < 1:
        raise ConfigError(f"--depths needs at least one positive depth, got {text!r}")
    return depths


# ------------------------------------------------------------------------------------------ memory probes
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kilobytes on Linux


# ------------------------------------------------------------------------------------------------ worker
def _build(model: str | None, arch: str):
    import torch

    from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer

    if arch == "bundle":
        from ctvl.tokenizers.causal3d.bundle import DEFAULT_BUNDLE, load_tokenizer

        if model or DEFAULT_BUNDLE.exists():
            return load_tokenizer(model).model, "bundle"
        arch = "cpu"
    torch.manual_seed(0)
    config = {"cpu": Causal3DConfig.cpu, "paper": Causal3DConfig.paper}[arch]()
    return Causal3DTokenizer(config=config).eval(), f"random {arch} weights"


def measure(op: str, depth: int, size: int, model: str | None = None, arch: str = "bundle") -> dict[str, Any]:
    """Run one operation in this process and report its working memory and time (call in a fresh process)."""
    import torch

    from ctvl.tokenizers.causal3d.model import eval_mode
    from ctvl.tokenizers.causal3d.streaming import iter_decode

    net, weights = _build(model, arch)
    torch.manual_seed(1)
    output_mb = 0.0
    if op == "encode":
        x = torch.rand(1, 1, depth, size, size) * 2 - 1  # (1, 1, T, S, S), pages touched now
    elif op in ("decode", "decode_oneshot"):
        _, t, h, w = net.latent_shape(depth, size, size)
        size_codes = getattr(net.quantizer, "codebook_size", 2)
        indices = torch.randint(0, size_codes, (1, t, h, w))
        with torch.no_grad():
            codes = net.quantizer.indices_to_codes(indices).contiguous()  # (1, D, t, h, w)
    else:
        raise ConfigError(f"unknown benchmark operation {op!r}; one of {', '.join(OPS)}")
    gc.collect()
    rss_before = _status_kb("VmRSS")
    exact = rss_before is not None and _reset_high_water()
    maxrss_before = _maxrss_kb()
    t0 = time.perf_counter()
    if op == "encode":
        tokens = net.encode(x, mode="windowed", chunk=1)
        result_shape = list(tokens.indices.shape)
    elif op == "decode":
        with tempfile.TemporaryFile() as sink, eval_mode(net):
            for part in iter_decode(net, codes, chunk_latents=1, shape=(depth, size, size)):
                sink.write(part.numpy().tobytes())  # (1, 1, n, S, S) slabs, streamed out
                output_mb += part.numel() * 4 / MB
        result_shape = [1, 1, depth, size, size]
    else:
        with torch.no_grad():
            out = net.decode_codes(codes)[:, :, :depth]  # (1, 1, T, S, S) held whole
        output_mb = out.numel() * 4 / MB
        result_shape = list(out.shape)
    seconds = time.perf_counter() - t0
    if exact:
        peak_kb, base_kb, source = _status_kb("VmHWM") or 0, rss_before or 0, "VmHWM after clear_refs"
    else:
        peak_kb, base_kb, source = _maxrss_kb(), rss_before or maxrss_before, "ru_maxrss"
    return {
        "op": op,
        "depth": depth,
        "size": size,
        "peak_mb": round(max(0, peak_kb - base_kb) / 1024, 1),
        "seconds": round(seconds, 3),
        "rss_before_mb": round(base_kb / 1024, 1),
        "rss_peak_mb": round(peak_kb / 1024, 1),  # whole-process RSS at the operation's peak
        "output_mb": round(output_mb, 1),
        "result_shape": result_shape,
        "weights": weights,
        "memory_source": source,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default (dynamic)"),
        "threads": torch.get_num_threads(),
    }


def run_one(
    op: str, depth: int, size: int, model: str | Path | None, arch: str, threads: int, timeout: float = 3600.0
) -> dict[str, Any]:
    """Measure one operation in a fresh subprocess; errors (e.g. out of memory) come back as ``{"error"}``."""
    cmd = [sys.executable, "-m", "ctvl.bench.tokenizer", "--worker", op, str(depth), str(size), "--arch", arch]
    if model:
        cmd += ["--model", str(model)]
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))  # see the module docstring
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CTVL_BENCH_THREADS=str(threads))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"op": op, "depth": depth, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"op": op, "depth": depth, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def run_benchmark(
    depths: Sequence[int] = (65, 321),
    size: int = 512,
    model: str | Path | None = None,
    arch: str = "bundle",
    threads: int = 0,
    oneshot: bool = True,
    progress: bool = False,
    runner: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Measure every operation at every depth (one fresh process each) and compute the ratios.

    Args:
        depths: slice counts; ratios compare the largest with the smallest.
        size: in-plane size S (S x S slices).
        model: tokenizer bundle/checkpoint (default: the shipped bundle, else random CPU weights).
        arch: ``bundle``, ``cpu`` or ``paper`` (random weights for the last two).
        threads: torch threads per measurement (0: default).
        oneshot: also measure the one-shot decode (memory grows with depth: the baseline).
        progress: show a rich progress bar.
        runner: measurement function (default :func:`run_one`; tests may inject one).

    Returns:
        ``{"encode": {depth: {"peak_mb", "seconds", ...}}, "decode": {...}, "decode_oneshot": {...},
        "ratio_encode", "ratio_decode", "ratio_decode_oneshot", "time_ratio_*", "target_ratio", "pass", ...}``
        (depth keys are strings, as in JSON).
    """
    if arch not in ("bundle", "cpu", "paper"):
        raise ConfigError(f"--arch must be bundle, cpu or paper, got {arch!r}")
    if size < 1:
        raise ConfigError(f"--size must be positive, got {size}")
    depths = sorted(set(int(d) for d in depths))
    ops = [op for op in OPS if oneshot or op != "decode_oneshot"]
    jobs = [(op, d) for op in ops for d in depths]
    result: dict[str, Any] = {op: {} for op in ops}
    runner = runner or run_one
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("bench tokenizer", total=len(jobs))
        for op, d in jobs:
            bar.update(task, description=f"{op} T={d} {size}x{size}")
            result[op][str(d)] = runner(op, d, size, model, arch, threads)
            bar.advance(task)
    lo, hi = str(depths[0]), str(depths[-1])
    for op in ops:
        a, b = result[op][lo], result[op][hi]
        ok = "error" not in a and "error" not in b
        ratio = (b["peak_mb"] / a["peak_mb"]) if ok and a["peak_mb"] > 0 else None
        result[f"ratio_{op}"] = None if ratio is None else round(ratio, 3)
        result[f"time_ratio_{op}"] = round(b["seconds"] / a["seconds"], 3) if ok and a["seconds"] > 0 else None
    first = next((v for op in ops for v in result[op].values() if "error" not in v), {})
    result.update(
        depths=depths,
        size=size,
        depth_ratio=round(depths[-1] / depths[0], 3),
        target_ratio=TARGET_RATIO,
        weights=first.get("weights"),
        threads=first.get("threads"),
        memory_source=first.get("memory_source"),
        malloc_mmap_threshold=first.get("malloc_mmap_threshold"),
        method="peak_mb = RSS high-water during the operation minus RSS before it (model and input already "
        "resident), one fresh process per measurement",
    )
    checks = [result.get("ratio_encode"), result.get("ratio_decode")]
    result["pass"] = all(r is not None and r <= TARGET_RATIO for r in checks) if len(depths) > 1 else None
    return result


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`run_benchmark` result."""
    lines = [
        f"tokenizer benchmark at {result['size']}x{result['size']} ({result.get('weights')}, "
        f"{result.get('threads')} threads; {result.get('memory_source')}; "
        f"MALLOC_MMAP_THRESHOLD_={result.get('malloc_mmap_threshold')})",
        f"{'operation':<16}{'depth':>7}{'peak MB':>11}{'seconds':>10}",
    ]
    for op in OPS:
        for d, row in result.get(op, {}).items():
            if "error" in row:
                lines.append(f"{op:<16}{d:>7}  {row['error']}")
            else:
                lines.append(f"{op:<16}{d:>7}{row['peak_mb']:>11.1f}{row['seconds']:>10.2f}")
    for op in OPS:
        if f"ratio_{op}" in result:
            lines.append(f"memory ratio {op}: {result[f'ratio_{op}']} (time ratio {result[f'time_ratio_{op}']})")
    if result.get("pass") is not None:
        verdict = "PASS" if result["pass"] else "FAIL"
        lines.append(f"target: encode and decode ratio <= {result['target_ratio']}: {verdict}")
    return "\n".join(lines)


def _worker_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctvl.bench.tokenizer")
    parser.add_argument("--worker", nargs=3, metavar=("OP", "DEPTH", "SIZE"), required=True)
    parser.add_argument("--arch", default="bundle")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    threads = int(os.environ.get("CTVL_BENCH_THREADS", "0"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    op, depth, size = args.worker
    print(json.dumps(measure(op, int(depth), int(size), args.model, args.arch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
