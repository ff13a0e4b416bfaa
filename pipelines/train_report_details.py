"""Finding details in the diagnosis prompt (issue 13, duplicates): train the voxel diagnosis' side/extent
head and fine-tune the shipped LM to write them, then measure and (when better) ship both.

    python pipelines/train_report_details.py                   # ~35 min on 2 cores
    python pipelines/train_report_details.py --quick --out /tmp/d   # smoke run, never installs

Why: with present/absent alone the LM writes the most common wording of each finding, so scans with the
same diagnosed findings get the same report (duplicate fraction 0.29 on held-out phantoms; most are one
"2 pulmonary nodules in the right upper and right lower lobe" sentence). :mod:`ctvl.report.details` adds a
side and an extent to each present label of the prompt.

Steps (each reused when its output is there, so a re-run continues):

1. the detail codes of the training phantoms (from their seeds, :func:`ctvl.report.details.record_states`)
   and the frozen shipped classifier's last feature maps of their voxels; a
   :class:`~ctvl.report.details.DetailHead` trained on them (AdamW, cross-entropy on present labels, the
   epoch kept that scores best on a 10 % split of the training scans); the classifier and its thresholds
   are unchanged, so the prompt's present/absent states are too;
2. the shipped LM fine-tuned with ``model.detail_prompt`` (``init_from`` the shipped bundle, its BPE kept,
   the detail table starting at zero) on seed 0's training phantoms with their true codes;
3. on seed 0's 250 valid scans and 250 scans of seed 7 (nothing tuned on either): the shipped bundle and
   the new one, both with voxel-diagnosis prompts, and the new LM with true labels and codes (oracle);
   clinical macro/micro-F1, duplicate fraction, contradictions, seconds per report; the head's side and
   extent accuracy on the present labels;
4. ``details.json`` and ``card_section.md`` in ``--out``; unless ``--quick`` or ``--no-install``, the new
   bundle replaces the shipped one when its duplicate fraction is lower on both held-out sets, its
   macro-F1 is no more than 0.01 below the shipped one's on either, no more of its impressions place a
   finding where the findings do not (``misplaced``, :mod:`ctvl.report.specifics`), and decoding had to drop
   such an impression sentence in at most 1 % more of its reports.

Measured (2026-12-07, not installed then): duplicates 0.288 -> 0.224 (seed 0 valid) and 0.308 -> 0.236
(seed 7) at macro-F1 0.709 -> 0.719 / 0.719 -> 0.720, but impressions naming a lobe their findings did not
rose from 24 to 48 of the first 120 seed-7 reports. Decoding now replaces such a location with the findings'
own (:func:`ctvl.report.consistency.make_consistent`), so both bundles write none; the figures after that
change are in ``card_section.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "pipelines"))

from report_card import splice_section  # noqa: E402
from train_report import fill_cache  # noqa: E402
from train_report_diagnosis import ensure, read_volumes, score, write_reports  # noqa: E402
from train_report_lm import train  # noqa: E402

from ctvl.atomic import publish_dir, write_text  # noqa: E402
from ctvl.data.datasets import load_record_volume  # noqa: E402
from ctvl.eval.features import model_space_volumes  # noqa: E402
from ctvl.eval.labeler import ReportLabeler  # noqa: E402
from ctvl.report.bundle import DEFAULT_BUNDLE, export_report_bundle, load_report_model  # noqa: E402
from ctvl.report.details import DetailHead, detail_accuracy, detail_loss, record_states  # noqa: E402
from ctvl.report.diagnosis import load_diagnosis, write_diagnosis  # noqa: E402
from ctvl.report.generate import ReportGenerator  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- details:begin -->", "<!-- details:end -->"


def feature_maps(net: torch.nn.Module, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """(N, 1, T, H, W) volumes → (N, C, t, h, w) float16 last-stage maps of the frozen classifier."""
    out = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(net.stages(x[i : i + batch].float()).half())
    return torch.cat(out)


def held_back(records: list) -> np.ndarray:
    """A fixed 10 % of the training scans (by name) for choosing the head's epoch."""
    return np.array([hashlib.sha256(r.volume_name.encode()).digest()[0] < 26 for r in records])


def train_head(h: torch.Tensor, states: torch.Tensor, back: np.ndarray, epochs: int, seed: int = 1) -> tuple:
    """Train a :class:`DetailHead` on maps ``h`` (N, C, t, h, w) and states (N, 18); keep the best epoch on
    ``back``. Returns (head, facts)."""
    torch.manual_seed(seed)
    head = DetailHead(channels=h.shape[1], cells=tuple(h.shape[2:]))
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-2)
    fit, val = np.flatnonzero(~back), np.flatnonzero(back)
    best, best_state, curve = -1.0, None, []
    began = time.perf_counter()
    for _ in range(epochs):
        head.train()
        order = torch.randperm(len(fit))
        for i in range(0, len(fit), 128):
            idx = fit[order[i : i + 128].numpy()]
            loss = detail_loss(head, h[idx].float(), states[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            acc = detail_accuracy(head.codes(h[val].float()), states[val])
        curve.append(acc["both"])
        if acc["both"] > best:
            best, best_state = acc["both"], {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    head.eval()
    facts = {
        "epochs": epochs,
        "best_epoch": int(np.argmax(curve)) + 1,
        "held_back_scans": len(val),
        "held_back_accuracy": best,
        "seconds": round(time.perf_counter() - began, 1),
    }
    return head, facts


def measure(bundles: dict, sets: list, batch: int, cache: Path) -> dict:
    """Per held-out set: each bundle with its voxel prompts, the new LM with true codes, head accuracy."""
    labeler = ReportLabeler()
    gens = {name: ReportGenerator(loaded=loaded, labeler=labeler) for name, loaded in bundles.items()}
    result: dict = {}
    for set_name, records in sets:
        volumes = [load_record_volume(r) for r in records]
        truth = np.stack([r.labels for r in records]).astype(np.int64)
        true_states = torch.from_numpy(record_states(records, cache / f"details-{set_name}.json"))
        codes, readings, read_s = read_volumes(list(gens.values()), volumes)
        row: dict = {"n": len(records)}
        for (name, gen), given in zip(gens.items(), readings, strict=True):
            reports, seconds = write_reports(gen, codes, given, batch)
            row[f"{name}/voxel"] = score(reports, truth, labeler, seconds + read_s)
            print(set_name, name, row[f"{name}/voxel"]["macro_f1"], row[f"{name}/voxel"]["duplicate_fraction"])
        new = gens["details"]
        oracle = [torch.stack([torch.from_numpy(t).float(), s.float()], -1) for t, s in zip(truth, true_states)]
        reports, seconds = write_reports(new, codes, oracle, batch)
        row["details/oracle"] = score(reports, truth, labeler, seconds + read_s)
        reading = torch.stack(readings[-1])  # (N, 18, 2)
        row["head"] = detail_accuracy(reading[..., 1].long() * (true_states > 0), true_states)
        result[set_name] = row
    return result


def card_section(facts: dict, result: dict) -> str:
    h, t = facts["head"], facts["lm"]
    lines = [
        MARK_BEGIN,
        "## Finding details in the prompt (`pipelines/train_report_details.py`)",
        "",
        "Each present label of the diagnosis prompt also carries a side (right, left, both) and an extent "
        "(the finding's severity, or its size graded for nodules and hiatal hernia), `ctvl.report.details`. "
        f"The voxel classifier reads them with a head on its last feature map (the classifier and its thresholds "
        f"frozen): trained on {facts['n_head_train']:,} training phantoms ({facts['head_sets']}) in "
        f"{h['seconds'] / 60:.1f} min, epoch {h['best_epoch']} of {h['epochs']} kept by a 10 % split of them "
        f"(side and extent both right on {h['held_back_accuracy']:.1%} of present labels there). The LM was "
        f"fine-tuned from the shipped one with `model.detail_prompt: true` for {t['steps']} steps on "
        f"{facts['n_lm_train']:,} phantoms (seed 0) with their true codes, in {t['seconds'] / 60:.1f} min "
        f"({facts['machine']}); its BPE and tokenizer are unchanged.",
        "",
        "| held-out phantoms | bundle | prompt | clinical macro-F1 | micro-F1 | duplicate fraction | contradicting "
        "| misplaced (sentences dropped) | s / report |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result.items():
        for key, bundle, prompt in (
            ("shipped/voxel", "previous", "voxel diagnosis"),
            ("details/voxel", "with details", "voxel diagnosis + details"),
            ("details/oracle", "with details", "ground truth + true details"),
        ):
            r = row[key]
            lines.append(
                f"| {name} ({row['n']}) | {bundle} | {prompt} | {r['macro_f1']:.3f} | {r['micro_f1']:.3f} | "
                f"{r['duplicate_fraction']:.3f} | {r['contradicting']} | {r['misplaced']} ({r['misplaced_dropped']}) | "
                f"{r['seconds_per_report']:.2f} |"
            )
    lines += ["", "Detail head on the held-out scans' present labels (true present labels, its codes):", ""]
    lines += [
        "| held-out phantoms | present labels | side right | extent right | both right |",
        "|---|---|---|---|---|",
    ]
    for name, row in result.items():
        a = row["head"]
        lines.append(f"| {name} | {a['present_labels']} | {a['side']:.3f} | {a['extent']:.3f} | {a['both']:.3f} |")
    lines += ["", MARK_END, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--extra-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed3")
    parser.add_argument("--new-seed-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed7")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "report-details")
    parser.add_argument("--n-train", type=int, default=2000, help="seed-0 training phantoms (head and LM)")
    parser.add_argument("--n-extra", type=int, default=6000, help="seed-3 training phantoms (head only)")
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=30, help="detail-head epochs")
    parser.add_argument("--steps", type=int, default=800, help="LM fine-tuning steps")
    parser.add_argument("--lr", type=float, default=3e-4, help="LM fine-tuning peak learning rate")
    parser.add_argument("--batch", type=int, default=8, help="reports generated together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny data and steps; never installs")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    extra: list[str] = []
    if args.quick:
        args.n_train, args.n_extra, args.n_valid, args.steps, args.epochs = 24, 8, 4, 4, 2
        args.data, args.extra_data, args.new_seed_data = out / "data", out / "data-extra", out / "data-seed7"
        extra = ["log_every=2", "checkpoint_every=4", "warmup_steps=2", "model.max_new_tokens=48"]
    (out / "logs").mkdir(parents=True, exist_ok=True)
    shipped = load_report_model(None)
    if shipped.diagnosis is None or shipped.tokenizer is None:
        raise SystemExit("the shipped report bundle has no voxel diagnosis or tokenizer")
    facts: dict = {
        "pipeline": "pipelines/train_report_details.py",
        "machine": f"{platform.machine()}, {args.threads} torch threads",
    }

    # 1. the detail head on the frozen classifier
    diag_dir = out / "diagnosis"
    lm_records = ensure(args.data.resolve(), 0, "train", args.n_train)
    head_records = lm_records + (ensure(args.extra_data.resolve(), 3, "train", args.n_extra) if args.n_extra else [])
    facts["n_head_train"], facts["n_lm_train"] = len(head_records), len(lm_records)
    facts["head_sets"] = f"seed 0: {len(lm_records):,}" + (f"; seed 3: {args.n_extra:,}" if args.n_extra else "")
    if (diag_dir / "config.json").is_file():
        facts["head"] = json.loads((diag_dir / "config.json").read_text(encoding="utf-8"))["training"]["detail_head"]
        print(f"reusing the detail head in {diag_dir}", flush=True)
    else:
        states = torch.from_numpy(record_states(head_records, out / "details-train.json"))
        x, _ = model_space_volumes(head_records, shipped.spec, cache_dir=out / "voxels", progress=True)
        h = feature_maps(shipped.diagnosis.net, x)
        del x
        head, facts["head"] = train_head(h, states, held_back(head_records), args.epochs)
        print("detail head", facts["head"], flush=True)
        d = shipped.diagnosis
        write_diagnosis(
            diag_dir,
            net=d.net,
            thresholds=d.thresholds,
            spec=d.spec,
            training={**d.config.get("training", {}), "detail_head": facts["head"]},
            detail=head,
        )
    for png in (shipped.source / "diagnosis").glob("*.png"):  # the classifier's figures stay with it
        shutil.copy2(png, diag_dir / png.name)
    load_diagnosis(diag_dir, shipped.spec)  # it loads back whole

    # 2. the LM, fine-tuned to write the details
    tokenizer = str(shipped.source / "tokenizer")
    cache = out / "cache"
    facts["cache_seconds"] = round(fill_cache(args.data.resolve(), tokenizer, cache), 1)
    run_dir = out / "run"
    overrides = [
        f"output_dir={run_dir}",
        f"data.root={args.data.resolve()}",
        f"data.cache_dir={cache}",
        f"data.tokenizer={tokenizer}",
        f"data.limit={args.n_train}",
        f"init_from={shipped.source}",
        "model.detail_prompt=true",
        f"steps={args.steps}",
        f"lr={args.lr}",
        "warmup_steps=40",
        f"min_lr={args.lr / 10}",
        *extra,
    ]
    facts["lm"] = train(overrides, run_dir, args.steps, args.threads, out / "logs" / "train.log")
    shipped_config = json.loads((shipped.source / "config.json").read_text(encoding="utf-8"))
    candidate = export_report_bundle(
        run_dir,
        out / "bundle",
        card=(shipped.source / "MODEL_CARD.md").read_text(encoding="utf-8"),
        training={**shipped_config["training"], "details": {k: v for k, v in facts.items() if k != "sets"}},
        half=bool(shipped_config["training"].get("weights_dtype") == "float16"),
        tokenizer_source=tokenizer,
        model_overrides={"label_threshold": shipped.model.config.label_threshold},
        diagnosis_source=diag_dir,
    )

    # 3. held-out measurement
    sets = [
        ("seed0-valid", ensure(args.data.resolve(), 0, "valid", args.n_valid)),
        ("seed7-valid", ensure(args.new_seed_data.resolve(), 7, "valid", args.n_valid)),
    ]
    result = measure({"shipped": shipped, "details": load_report_model(candidate)}, sets, args.batch, out)
    facts["sets"] = result
    write_text(out / "details.json", json.dumps(facts, indent=2, default=str) + "\n")
    section = card_section(facts, result)
    write_text(out / "card_section.md", section)
    print(section)
    better = all(
        row["details/voxel"]["duplicate_fraction"] < row["shipped/voxel"]["duplicate_fraction"]
        and row["details/voxel"]["macro_f1"] >= row["shipped/voxel"]["macro_f1"] - 0.01
        and row["details/voxel"]["misplaced"] <= row["shipped/voxel"]["misplaced"]
        and row["details/voxel"]["misplaced_dropped"] <= row["shipped/voxel"]["misplaced_dropped"] + 0.01 * row["n"]
        for row in result.values()
    )
    if not (args.quick or args.no_install):
        if better:
            card = splice_section(
                (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text(encoding="utf-8"), section, MARK_BEGIN, MARK_END
            )
            with publish_dir(DEFAULT_BUNDLE) as tmp:  # the shipped bundle is replaced whole, atomically
                for item in candidate.iterdir():
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
                for png in DEFAULT_BUNDLE.glob("*.png"):  # figures of the earlier card sections
                    shutil.copy2(png, tmp / png.name)
                (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
            print(f"installed the bundle with finding details in {DEFAULT_BUNDLE}", flush=True)
        else:
            print("not installed: fewer duplicates at the same macro-F1 on both held-out sets not reached", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
