"""One prepared GPU check of the paper-sized recipes (issue 14 §6): throughput and peak memory as JSON.

Three measurements, each through ctvl's own code:

* ``tokenizer_step``: the paper-sized causal 3D tokenizer (``configs/ctrate-paper-tokenizer-s3.yaml``'s
  ``model:`` section: 96 filters, 4 ResBlocks, 8x8x8, 18-bit LFQ) takes AdamW steps on one
  1 x 1 x 241 x 512 x 512 volume in bf16 autocast, with the recipe's generator loss (L1, SSIM, LFQ terms,
  the adversarial term through the patch discriminator; the discriminator's own update is left out);
* ``report_step``: the paper report recipe (``configs/ctrate-paper-report.yaml``: LoRA r = 128 on every
  linear layer, no token reduction, an 18 x 31 x 32 x 32 latent grid = 31,744 visual tokens) with a small
  randomly initialised local Llama in place of the 8 B one, sharded with FSDP2 (each decoder layer a unit,
  bf16 compute, fp32 reduce), activation checkpointing on, AdamW steps on random latents and report ids;
* ``flat_memory``: peak memory of the windowed encode and the streaming decode of the paper tokenizer at two
  depths and 512 x 512 (the README's CPU ratios are x1.02 / x1.00), the ratio deepest / shallowest.

Peak memory is ``torch.cuda.max_memory_allocated`` over the operation, minus what was allocated before it
(CUDA only; on the CPU the check runs the same code at ``--small`` size to prove that it runs, and reports
no memory). An out-of-memory error is recorded in the JSON, not raised.

Run: ``bash pipelines/gpu_check.sh`` (about 10 minutes on one H100), or on the CPU
``python pipelines/gpu_check.py --device cpu --small`` (seconds; tests/test_gpu_check.py does this).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctvl.errors import CtvlError  # noqa: E402
from ctvl.report.task import ReportTask  # noqa: E402
from ctvl.tokenizers.causal3d.losses import TokenizerLoss  # noqa: E402
from ctvl.tokenizers.causal3d.model import Causal3DConfig, Causal3DTokenizer  # noqa: E402
from ctvl.tokenizers.causal3d.task import parse_model_section  # noqa: E402
from ctvl.train.config import load_config  # noqa: E402
from ctvl.train.distributed import init_distributed  # noqa: E402
from ctvl.train.precision import resolve_precision  # noqa: E402
from ctvl.train.sharding import enable_activation_checkpointing, shard_model  # noqa: E402

GIB = 2**30
TOKENIZER_CONFIG = REPO / "configs" / "ctrate-paper-tokenizer-s3.yaml"
REPORT_CONFIG = REPO / "configs" / "ctrate-paper-report.yaml"
SMALL_LM = {"hidden_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4}
SMALL_LM_INTERMEDIATE = 2816


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """Run ``fn`` once: (result, seconds, peak GiB above what was allocated before; None off CUDA)."""
    sync(device)
    before = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) - before) / GIB if device.type == "cuda" else None
    return out, seconds, peak


def timed_steps(device: torch.device, step: Callable[[], float], steps: int) -> tuple[float, float | None, bool]:
    """One warm-up call of ``step`` (kernels, allocator), then ``steps`` timed ones.

    Returns:
        (median seconds per step, highest peak GiB or None off CUDA, whether every loss was finite).
    """
    step()
    times, peaks, losses = [], [], []
    for _ in range(steps):
        value, seconds, peak = measured(device, step)
        times.append(seconds)
        peaks.append(peak)
        losses.append(value)
    peak = None if peaks[0] is None else round(max(p for p in peaks if p is not None), 2)
    return sorted(times)[len(times) // 2], peak, all(math.isfinite(v) for v in losses)


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``, or ``{"error": ...}`` when it runs out of memory or fails (the check goes on)."""
    try:
        return fn()
    except torch.OutOfMemoryError as exc:
        return {"error": "out of memory", "detail": str(exc).splitlines()[0]}
    except (CtvlError, RuntimeError, ValueError) as exc:
        return {"error": f"{name} failed: {type(exc).__name__}", "detail": str(exc).splitlines()[0][:400]}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def tokenizer_model(small: bool) -> tuple[Causal3DConfig, Any]:
    section = parse_model_section(yaml.safe_load(TOKENIZER_CONFIG.read_text())["model"])
    config = section.config
    if small:
        config = Causal3DConfig.cpu(filters=4, token_channels=6, max_groups=4)
    return config, section.loss


def tokenizer_step(device: torch.device, small: bool, steps: int) -> dict[str, Any]:
    """AdamW steps of the paper tokenizer on one (1, 1, T, S, S) volume in bf16 autocast."""
    config, loss_config = tokenizer_model(small)
    depth, size = (17, 32) if small else (241, 512)
    torch.manual_seed(0)
    model = Causal3DTokenizer(config=config).to(device)
    criterion = TokenizerLoss(config=loss_config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(1, 1, depth, size, size, device=device) * 2 - 1
    precision, note = resolve_precision("bf16" if device.type == "cuda" else "fp32", device)

    def step() -> float:
        with precision.autocast():
            out = model(x)
            loss, _ = criterion(x, out.recon, out.aux_loss, step=None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    s, peak, finite = timed_steps(device, step, steps)
    return {
        "shape": [1, 1, depth, size, size],
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": precision.name,
        "precision_note": note,
        "steps": steps,
        "seconds_per_step": round(s, 4),
        "voxels_per_second": round(depth * size * size / s),
        "peak_gib": peak,
        "losses_finite": finite,
    }


def report_step(device: torch.device, small: bool, steps: int, ctx: Any) -> dict[str, Any]:
    """FSDP2 + LoRA + checkpointing steps of the paper report recipe with a small local LM."""
    lm = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}
    inter = 64
    if not small:
        lm, inter = SMALL_LM, SMALL_LM_INTERMEDIATE
    grid = (3, 4, 4) if small else (31, 32, 32)
    report_len = 24 if small else 512
    overrides = [f"model.lm.{k}={v}" for k, v in lm.items()] + [
        f"model.lm.intermediate_size={inter}",
        "model.vocab_size=2000",
        "data.tokenizer=null",
    ]
    if small:
        overrides += ["model.projector_hidden=32", "model.lora.r=4", "model.lora.alpha=8"]
    cfg = load_config(REPORT_CONFIG, overrides)
    task = ReportTask()
    torch.manual_seed(0)
    model = task.dry_model(cfg).to(device)
    blocks = task.blocks(model)
    enable_activation_checkpointing(blocks)
    precision, note = resolve_precision("bf16" if device.type == "cuda" else "fp32", device)
    model = shard_model(model, blocks, ctx, precision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    channels = int(model.config.visual_dim)
    codes = [(torch.randint(0, 2, (channels, *grid), generator=g).float() * 2 - 1).to(device)]
    targets = [torch.randint(3, 2000, (report_len,), generator=g).to(device)]
    labels = torch.randint(0, 2, (1, 18), generator=g).to(device)

    def step() -> float:
        with precision.autocast():
            loss = model(codes, targets, labels)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    s, peak, finite = timed_steps(device, step, steps)
    tokens = grid[0] * grid[1] * grid[2] + report_len
    return {
        "lm": {**lm, "intermediate_size": inter},
        "lora": dict(model.config.lora or {}),
        "sequence_tokens": tokens,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "strategy": f"fsdp2 over {ctx.world_size} rank(s), activation checkpointing on {len(blocks)} blocks",
        "precision": precision.name,
        "precision_note": note,
        "steps": steps,
        "seconds_per_step": round(s, 4),
        "tokens_per_second": round(tokens / s),
        "peak_gib": peak,
        "losses_finite": finite,
    }


def flat_memory(device: torch.device, small: bool) -> dict[str, Any]:
    """Peak memory of windowed encode and streaming decode at two depths; ratio deepest / shallowest."""
    config, _ = tokenizer_model(small)
    depths, size = ((9, 33), 32) if small else ((65, 321), 512)
    torch.manual_seed(0)
    model = Causal3DTokenizer(config=config).to(device).eval()
    rows: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for depth in depths:
            x = torch.rand(1, 1, depth, size, size, device=device) * 2 - 1
            tokens, enc_s, enc_peak = measured(device, lambda x=x: model.encode(x))
            del x
            _, dec_s, dec_peak = measured(device, lambda t=tokens: model.decode(t))
            rows[str(depth)] = {
                "encode_s": round(enc_s, 3),
                "encode_peak_gib": enc_peak,
                "decode_s": round(dec_s, 3),
                "decode_peak_gib": dec_peak,
            }
    lo, hi = rows[str(depths[0])], rows[str(depths[-1])]
    ratio = {}
    for op in ("encode", "decode"):
        a, b = lo[f"{op}_peak_gib"], hi[f"{op}_peak_gib"]
        ratio[op] = None if a is None or b is None else round(b / a, 3)
    return {"size": size, "depths": list(depths), "per_depth": rows, "ratio": ratio, "target": 1.15}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--small", action="store_true", help="tiny sizes (a CPU smoke run of the same code)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up)")
    parser.add_argument("--out", type=Path, default=None, help="also write gpu_check.json into this folder")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible; run with --device cpu --small for a smoke run", file=sys.stderr)
        return 2
    if not dist.is_initialized():  # FSDP2 needs a process group, even of one rank
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo", rank=0, world_size=1)
    ctx = init_distributed(args.device)
    device = ctx.device
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "small": bool(args.small),
    }
    began = time.perf_counter()
    result["tokenizer_step"] = guarded("tokenizer_step", lambda: tokenizer_step(device, args.small, args.steps))
    result["report_step"] = guarded("report_step", lambda: report_step(device, args.small, args.steps, ctx))
    result["flat_memory"] = guarded("flat_memory", lambda: flat_memory(device, args.small))
    result["total_s"] = round(time.perf_counter() - began, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
