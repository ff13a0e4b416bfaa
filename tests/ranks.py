"""Start gloo ranks in fresh interpreters for multi-process tests, and never leave one behind.

Forking a process that already runs torch's OpenMP pool can deadlock the child (seen in CI), and a
non-daemon child that hangs keeps pytest from exiting. So ranks are *spawned* (a clean interpreter
that imports the test module), are daemons, run with one thread each, and any rank still alive
when the test ends is killed.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import socket
import time
from collections.abc import Callable
from typing import Any


def _entry(target: Callable[..., Any], rank: int, world: int, port: int, args: tuple, out) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    import torch

    torch.set_num_threads(1)
    try:
        out.put((rank, target(*args)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        out.put((rank, f"rank {rank} raised {exc!r}"))


def run_ranks(target: Callable[..., Any], args: tuple = (), world: int = 2, timeout: float = 300.0) -> list[Any]:
    """Run ``target(*args)`` on ``world`` gloo ranks; return the results ordered by rank.

    ``target`` must be a module-level function (it is pickled by reference). Raises AssertionError
    when a rank fails, or when not every rank answered within ``timeout`` seconds.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_entry, args=(target, r, world, port, args, out), daemon=True) for r in range(world)]
    results: dict[int, Any] = {}
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        while len(results) < world:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                rank, value = out.get(timeout=min(remaining, 5.0))
                results[rank] = value
            except queue_mod.Empty:
                if all(not p.is_alive() for p in procs) and out.empty():
                    break  # every rank died without answering
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    missing = [r for r in range(world) if r not in results]
    assert not missing, f"ranks {missing} gave no result within {timeout:.0f} s"
    failed = [v for v in results.values() if isinstance(v, str) and v.startswith("rank ")]
    assert not failed, "; ".join(failed)
    return [results[r] for r in range(world)]
