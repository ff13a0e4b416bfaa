"""``ctvl bench synthesis``: wall time of one text-to-CT volume with a warm model, beside its parts.

Measured in one process, after loading the generator (timed: the cold cost) and one warm-up volume:

* ``volume``   :func:`ctvl.synthesis.synthesize` of one CPU-preset volume (prompt → MiniLM → ``steps`` flow
               steps with classifier-free guidance → tokenizer decode → HU volume), ``repeats`` times, each
               with its own seed;
* baselines in the same run, so the figure can be read on any machine: the text encoder alone, one guided
  UNet evaluation (``volume`` costs about ``steps`` of them), and the tokenizer's streaming decode of one
  latent alone (the floor any latent generator pays).

The target (issue 11) is a median ``volume`` time of at most 10 s on 2 cores with 25 steps.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

TARGET_SECONDS = 10.0
PROMPT = "moderate right pleural effusion, cardiomegaly"


def _timed(fn, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return {"median": round(statistics.median(times), 4), "min": round(min(times), 4), "max": round(max(times), 4)}


def run_synthesis_bench(
    model: str | Path | None = None, steps: int = 25, repeats: int = 3, threads: int = 2
) -> dict[str, Any]:
    """Time one volume and its parts; returns the JSON-able result (see the module docstring)."""
    from ctvl.synthesis import load_generator, synthesize
    from ctvl.synthesis.sample import decode_codes

    torch.set_num_threads(threads)
    began = time.perf_counter()
    gen = load_generator(model)
    load_seconds = time.perf_counter() - began
    synthesize(gen, PROMPT, seed=0, steps=steps)  # warm-up: first-call kernel selection, caches
    seeds = iter(range(1, 1 + repeats))
    volume = _timed(lambda: synthesize(gen, PROMPT, seed=next(seeds), steps=steps), repeats)
    text = _timed(lambda: gen.text.encode([PROMPT]), repeats)
    context = gen.model.context(gen.text.encode([PROMPT]) + [None])
    depth = int(gen.spec.depth or 33)
    factor = int(gen.tokenizer.model.config.time_factor)
    space = int(gen.tokenizer.model.config.space_factor)
    shape = (1 + (depth - 1) // factor, *(int(s) // space for s in gen.spec.size))
    x = torch.randn(2, gen.config.latent_channels, *shape)
    with torch.no_grad():
        unet = _timed(lambda: gen.model(x, torch.full((2,), 500.0), context), repeats)
    codes = torch.sign(torch.randn(1, gen.config.latent_channels, *shape))
    decode = _timed(lambda: decode_codes(gen, codes, depth), repeats)
    v = synthesize(gen, PROMPT, seed=0, steps=1).volumes[0]
    return {
        "bench": "synthesis",
        "generator": str(gen.source),
        "threads": threads,
        "steps": steps,
        "prompt": PROMPT,
        "volume_shape": list(v.shape),
        "spacing_mm": list(v.spacing),
        "latent_shape": [gen.config.latent_channels, *shape],
        "load_seconds": round(load_seconds, 3),
        "volume_seconds": volume,
        "baseline": {
            "text_encoder_seconds": text,
            "guided_unet_eval_seconds": unet,
            "tokenizer_decode_seconds": decode,
        },
        "target_seconds": TARGET_SECONDS,
        "pass": volume["median"] <= TARGET_SECONDS,
    }
