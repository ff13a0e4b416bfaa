"""``ctvl bench tokenizer``: per-depth memory/time of encode and decode in fresh processes, and the ratios."""

from __future__ import annotations

import json

import pytest

import ctvl.bench.tokenizer as bench
from ctvl.bench.tokenizer import format_table, measure, parse_depths, run_benchmark, run_one
from ctvl.cli import main
from ctvl.errors import ConfigError, InputError


def fake_runner(op: str, depth: int, size: int, model, arch: str, threads: int) -> dict:
    """Working memory flat in depth for encode/decode, linear for the one-shot decode."""
    peak = {"encode": 40.0, "decode": 50.0, "decode_oneshot": 2.0 * depth}[op] + depth / 100
    return {
        "op": op,
        "depth": depth,
        "size": size,
        "peak_mb": peak,
        "seconds": depth / 10,
        "weights": "fake",
        "threads": threads or 1,
        "memory_source": "fake",
    }


def test_ratios_and_keys() -> None:
    result = run_benchmark([321, 65], size=64, arch="cpu", runner=fake_runner)
    assert result["depths"] == [65, 321] and set(result["encode"]) == {"65", "321"}
    for op in ("encode", "decode", "decode_oneshot"):
        assert {"peak_mb", "seconds"} <= set(result[op]["65"])
    assert result["ratio_encode"] == pytest.approx((40 + 3.21) / (40 + 0.65), abs=1e-3)
    assert result["ratio_decode_oneshot"] == pytest.approx(645.21 / 130.65, abs=1e-3)
    assert result["time_ratio_encode"] == pytest.approx(321 / 65, abs=1e-3)
    assert result["pass"] is True and result["target_ratio"] == 1.15
    assert "decode_oneshot" not in run_benchmark([9, 17], 32, arch="cpu", oneshot=False, runner=fake_runner)
    text = format_table(result)
    assert "PASS" in text and "decode_oneshot" in text
    failing = run_benchmark(
        [9, 90], 32, arch="cpu", runner=lambda op, d, *a: {**fake_runner(op, d, *a), "peak_mb": float(d)}
    )
    assert failing["pass"] is False


def test_errors_are_reported_not_raised() -> None:
    def broken(op, depth, *args):
        return {"op": op, "depth": depth, "error": "exit -9: killed"} if depth > 10 else fake_runner(op, depth, *args)

    result = run_benchmark([9, 17], 32, arch="cpu", runner=broken)
    assert result["ratio_encode"] is None and result["pass"] is False
    assert "killed" in format_table(result)
    with pytest.raises(ConfigError):
        parse_depths("65,x")
    with pytest.raises(ConfigError):
        run_benchmark([9], 32, arch="tpu", runner=fake_runner)


def test_measure_in_process() -> None:
    row = measure("decode_oneshot", 17, 32, arch="cpu")
    assert row["result_shape"] == [1, 1, 17, 32, 32] and row["output_mb"] == pytest.approx(
        17 * 32 * 32 * 4 / 2**20, abs=0.1
    )
    assert row["peak_mb"] >= 0 and row["seconds"] > 0 and row["weights"] == "random cpu weights"
    enc = measure("encode", 17, 32, arch="cpu")
    assert enc["result_shape"] == [1, 3, 4, 4] and enc["output_mb"] == 0.0
    with pytest.raises(InputError, match="not found"):
        measure("encode", 17, 32, model="/nonexistent/bundle", arch="bundle")


def test_fresh_process_measurement() -> None:
    dec = run_one("decode", 17, 32, None, "cpu", 1)  # streaming decode, chunks written out as they come
    assert "error" not in dec, dec
    assert dec["result_shape"] == [1, 1, 17, 32, 32] and dec["threads"] == 1
    assert dec["peak_mb"] >= 0 and dec["rss_before_mb"] > 0 and dec["output_mb"] > 0
    assert dec["memory_source"] in ("VmHWM after clear_refs", "ru_maxrss")


def test_cli_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "run_one", fake_runner)
    assert main(["bench", "tokenizer", "--depths", "65,321", "--size", "512", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"encode", "decode", "ratio_encode", "ratio_decode", "decode_oneshot"} <= set(out)
    assert out["encode"]["321"]["peak_mb"] > 0 and out["size"] == 512
    assert main(["bench", "tokenizer", "--depths", "65,abc"]) == 2
    assert "error:" in capsys.readouterr().err
