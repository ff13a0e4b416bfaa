"""Tokenizer commands: ``ctvl train tokenizer``, ``ctvl encode``, ``ctvl reconstruct``, ``ctvl bench tokenizer``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ctvl.commands.dry_run import DRY_RUN_OPTION, GPUS_OPTION, JSON_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION
from ctvl.errors import InputError

_MODEL_HELP = (
    "Tokenizer bundle, checkpoint or run folder, or a shipped bundle by name: realct (default, real "
    "chest CT at 1.5 mm) or phantom (the report path's phantom tokenizer)."
)


def train_tokenizer_cmd(
    config: Path = typer.Option(..., "--config", help="Training YAML, e.g. configs/phantom-cpu-tokenizer-s1.yaml."),
    stage: int | None = typer.Option(None, "--stage", help="Curriculum stage 1|2|3 (must match the config)."),
    resume: bool = RESUME_OPTION,
    overrides: list[str] | None = OVERRIDES_ARGUMENT,
    dry_run: bool = DRY_RUN_OPTION,
    gpus: int = GPUS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train one curriculum stage of the causal 3D tokenizer (or the slice-wise baseline)."""
    from ctvl.errors import ConfigError
    from ctvl.tokenizers.causal3d.task import TokenizerTask
    from ctvl.train import run_training

    if stage is not None and stage not in (1, 2, 3):
        raise ConfigError(f"--stage must be 1, 2 or 3, got {stage}")
    if dry_run:
        from ctvl.commands.dry_run import print_dry_run

        print_dry_run(TokenizerTask(stage=stage), config, list(overrides or []), gpus, as_json)
        return
    result = run_training(TokenizerTask(stage=stage), config, list(overrides or []), resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        loss = "n/a" if result.loss is None else f"{result.loss:.4g}"
        typer.echo(
            f"trained {result.run_dir} to step {result.step} in {result.seconds:.0f} s (loss {loss}); "
            f"checkpoint {result.checkpoint}"
        )


def _read_scan(path: str, series: str | None):
    from ctvl.io import read_volume

    return read_volume(path, series=series)


def encode_cmd(
    scan: str = typer.Argument(
        ...,
        metavar="SCAN",
        help="NIfTI, NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd) file, DICOM folder, .zip of one, or .dcm.",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Token file to write (.safetensors)."),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    series: str | None = typer.Option(None, "--series", help="Series of a multi-series DICOM folder."),
) -> None:
    """Tokenize a CT scan: tokens + preprocessing spec + source geometry in one safetensors file."""
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer
    from ctvl.tokenizers.causal3d.inference import encode_scan, save_tokens

    if output.suffix != ".safetensors":
        raise InputError("token files end in .safetensors; choose another -o", path=output)
    tok = load_tokenizer(model)
    encoded = encode_scan(tok, _read_scan(scan, series))
    save_tokens(encoded, output)
    t, h, w = encoded.indices.shape
    typer.echo(
        f"wrote {output}: {t} x {h} x {w} tokens ({tok.model.config.compression}, "
        f"{encoded.tokenizer['codebook_size']} codes) for model grid {tuple(encoded.model_shape)}"
    )


def reconstruct_cmd(
    scan: str = typer.Argument(..., metavar="SCAN", help="A CT scan, or a token file from `ctvl encode`."),
    output: Path = typer.Option(..., "-o", "--output", help="Reconstruction to write (.nii or .nii.gz)."),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    series: str | None = typer.Option(None, "--series", help="Series of a multi-series DICOM folder."),
) -> None:
    """Encode and decode a scan; write the reconstruction on the scan's own grid, in HU, same affine."""
    from ctvl.eval.recon import field_of_view, recon_metrics
    from ctvl.io import write_nifti
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer
    from ctvl.tokenizers.causal3d.inference import load_tokens, reconstruct, reconstruct_tokens

    if not output.name.endswith((".nii", ".nii.gz")):
        raise InputError("the reconstruction is written as NIfTI; -o must end in .nii or .nii.gz", path=output)
    tok = load_tokenizer(model)
    if scan.endswith(".safetensors"):
        volume = reconstruct_tokens(tok, load_tokens(scan))
        note = "from tokens"
    else:
        source = _read_scan(scan, series)
        result = reconstruct(tok, source)
        volume = result.volume
        box = (slice(None), *field_of_view(tok.spec, source))  # the scanned part of the model grid
        m = recon_metrics(result.model_input[box], result.model_recon[box])
        note = f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} on the scanned part of the model grid"
    write_nifti(volume, output)
    typer.echo(f"wrote {output}: {' x '.join(map(str, volume.shape))} HU ({note})")


def bench_tokenizer_cmd(
    depths: str = typer.Option("65,321", "--depths", help="Comma-separated slice counts."),
    size: int = typer.Option(512, "--size", help="In-plane size (size x size)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP + " Random CPU weights when absent."),
    arch: str = typer.Option("bundle", "--arch", help="bundle | cpu | paper (random weights for cpu/paper)."),
    threads: int = typer.Option(0, "--threads", help="Torch threads per measurement (0: torch's default)."),
    oneshot: bool = typer.Option(True, "--oneshot/--no-oneshot", help="Also measure the one-shot decode."),
) -> None:
    """Peak memory and time of encode/decode at several depths (fresh process each), and their ratios."""
    from ctvl.bench.tokenizer import format_table, parse_depths, run_benchmark

    result = run_benchmark(
        parse_depths(depths), size=size, model=model, arch=arch, threads=threads, oneshot=oneshot, progress=not as_json
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(format_table(result))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``ctvl encode``, ``ctvl reconstruct``, ``ctvl train tokenizer``, ``ctvl bench tokenizer``."""
    app.command("encode")(encode_cmd)
    app.command("reconstruct")(reconstruct_cmd)
    groups["train"].command("tokenizer")(train_tokenizer_cmd)
    groups["bench"].command("tokenizer")(bench_tokenizer_cmd)
