"""Report model: loss on the report only, left padding invisible, visual conditioning learnable, decoding,
and the paper-sized config built at reduced size for one training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.report.model import ReportModel, ReportModelConfig
from ctvl.report.text_tokenizer import ReportTextTokenizer
from ctvl.train.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "Heart size is normal.",
    "Cardiomegaly is present.",
    "No effusion.",
    "Bilateral pleural effusion.",
    "Emphysema in both upper lobes.",
    "Normal.",
] * 4


@pytest.fixture(scope="module")
def text() -> ReportTextTokenizer:
    return ReportTextTokenizer.train(TEXTS, vocab_size=320)


def tiny(text: ReportTextTokenizer, **kw) -> ReportModel:
    torch.manual_seed(0)
    cfg = {
        "visual_dim": 4,
        "lm": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 256},
        "max_new_tokens": 16,
        **kw,
    }
    return ReportModel(config=ReportModelConfig.from_dict(cfg), text=text)


def test_loss_is_finite_and_reaches_the_projector(text):
    model = tiny(text, aux_label_weight=0.5)
    codes = [torch.sign(torch.randn(4, 2, 2, 2)) for _ in range(2)]
    targets = [torch.tensor(text.target(TEXTS[k], "Normal.")) for k in range(2)]
    out = model(codes, targets, torch.tensor([[0.0] * 17 + [1.0], [1.0] * 18]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["aux_loss"] > 0
    assert model.visual.projector.net[0].weight.grad.abs().sum() > 0
    assert model.aux_head.weight.grad is not None


def test_left_padding_does_not_change_a_sample(text):
    """Two scans with different visual token counts and report lengths in one batch = each alone."""
    model = tiny(text, reduction={"kind": "none"}).eval()
    codes = [torch.sign(torch.randn(4, 1, 2, 2)), torch.sign(torch.randn(4, 3, 2, 2))]
    targets = [torch.tensor(text.target(TEXTS[0], "Normal.")), torch.tensor(text.target(TEXTS[4], "Emphysema."))]
    with torch.no_grad():
        both = model.lm(**_lm_inputs(model, codes, targets)).logits
        for b in range(2):
            alone = model.lm(**_lm_inputs(model, codes[b : b + 1], targets[b : b + 1])).logits[0]
            assert torch.allclose(both[b, -alone.shape[0] :], alone, atol=1e-4)


def _lm_inputs(model, codes, targets):
    a = model.assemble(model.prefixes(codes, len(targets))[0], targets)
    return {"inputs_embeds": a.embeds, "attention_mask": a.attention_mask, "position_ids": a.position_ids}


def test_loss_counts_only_report_tokens(text):
    model = tiny(text)
    codes = [torch.sign(torch.randn(4, 2, 2, 2))]
    target = torch.tensor(text.target(TEXTS[1], "Cardiomegaly."))
    a = model.assemble(model.prefixes(codes, 1)[0], [target])
    assert int((a.labels != -100).sum()) == len(target)
    assert int(a.summary[0]) == 2 + 8  # <bos> <image> + 8 visual tokens -> </image>


def test_visual_tokens_steer_the_report_after_training(text):
    """Two scans, two reports: a few steps on the tiny model make greedy decoding tell them apart."""
    model = tiny(
        text,
        reduction={"kind": "none"},
        lm={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 128},
    )
    codes = [torch.ones(4, 1, 2, 2), -torch.ones(4, 1, 2, 2)]
    reports = [("Cardiomegaly is present.", "Cardiomegaly."), ("Heart size is normal.", "Normal.")]
    targets = [torch.tensor(text.target(*r)) for r in reports]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        loss = model(codes, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = [text.split_report(ids) for ids in model.generate(codes)]
    assert out == reports
    assert [text.split_report(ids) for ids in model.generate(codes, num_beams=2)] == reports


def test_generation_length_limit_and_text_only_model(text):
    model = tiny(text, visual="none").eval()
    assert model.visual is None
    rows = model.generate(None, batch=3, max_new_tokens=5)
    assert len(rows) == 3 and all(len(r) <= 5 for r in rows)
    assert rows[0] == rows[1] == rows[2]  # no input: every report is the same
    with pytest.raises(ConfigError):
        tiny(text).prefixes(None, 1)


def test_diagnosis_prompt_sits_after_image_and_follows_the_states(text):
    """18 diagnosis tokens between </image> and <findings>: ground truth in training, the head at inference."""
    model = tiny(text, conv_layers=1, conv_width=8, summary_token=True, label_prompt=True, aux_label_weight=0.5).eval()
    codes = [torch.sign(torch.randn(4, 2, 2, 2))]
    plain = tiny(text, conv_layers=1, conv_width=8, summary_token=True, aux_label_weight=0.5).eval()
    with torch.no_grad():
        states = torch.zeros(1, 18, dtype=torch.long)
        states[0, 3] = 1
        prefix = model.prefixes(codes, 1, states)[0][0]
        assert prefix.shape[0] == plain.prefixes(codes, 1)[0][0].shape[0] + 18
        table = model.diagnosis.weight
        torch.testing.assert_close(prefix[-19:-1], table[2 * torch.arange(18) + states[0]])  # then <findings>
        a = model.assemble([prefix], [torch.tensor(text.target("Normal.", "Normal."))])
        assert int(a.summary[0]) == 2 + 8 + 1  # <bos> <image> 8 visual + summary token -> </image>
        # inference: the label head's own reading, thresholded
        logits = model.visual(codes)[1]
        inferred = model.prefixes(codes, 1)[0][0]
        torch.testing.assert_close(inferred[-19:-1], table[2 * torch.arange(18) + model.diagnosis_states(logits)[0]])
        torch.testing.assert_close(model.label_probabilities(codes, 1), torch.sigmoid(logits))
        rows, probs = model.generate_with_probabilities(codes, max_new_tokens=4)
        assert rows == model.generate(codes, max_new_tokens=4)
        torch.testing.assert_close(probs, torch.sigmoid(logits))


def test_diagnosis_prompt_trains_with_ground_truth_and_steers_generation(text):
    """Same scan, two label sets: the report follows the diagnosis tokens it is given in training."""
    model = tiny(
        text,
        conv_layers=1,
        conv_width=8,
        summary_token=True,
        label_prompt=True,
        aux_label_weight=0.1,
        lm={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 128},
    )
    codes = [torch.ones(4, 1, 2, 2)] * 2
    labels = torch.zeros(2, 18)
    labels[0, 2] = 1.0  # cardiomegaly
    reports = [("Cardiomegaly is present.", "Cardiomegaly."), ("Heart size is normal.", "Normal.")]
    targets = [torch.tensor(text.target(*r)) for r in reports]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        out = model(codes, targets, labels)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert model.diagnosis.weight.grad is not None
    model.eval()
    with torch.no_grad():
        for b in range(2):
            prefix = model.prefixes(codes[:1], 1, labels[b : b + 1].long())[0]
            a = model.assemble(prefix)
            ids = model.lm.generate(
                inputs_embeds=a.embeds,
                attention_mask=a.attention_mask,
                do_sample=False,
                max_new_tokens=16,
                eos_token_id=text.eos_id,
                pad_token_id=text.pad_id,
            )[0].tolist()
            assert text.split_report(ids[: ids.index(text.eos_id)] if text.eos_id in ids else ids) == reports[b]


def test_gpt2_architecture(text):
    model = tiny(
        text,
        lm={
            "arch": "gpt2",
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 128,
        },
    )
    out = model([torch.randn(4, 1, 2, 2)], [torch.tensor(text.target("Normal.", "Normal."))])
    assert torch.isfinite(out["loss"])
    assert len(model.eval().generate([torch.randn(4, 1, 2, 2)], max_new_tokens=4)[0]) <= 4


@pytest.mark.parametrize(
    "bad",
    [
        {"visual": "image"},
        {"lm": {"layers": 2}},
        {"lm": {"arch": "t5"}},
        {"num_beams": 0},
        {"aux_label_weight": -1},
        {"projector": 2},
        {"label_prompt": True},
        {"label_prompt": True, "visual": "none", "summary_token": True},
        {"label_threshold": 1.0},
        {"summary_token": True},
        {"summary_token": True, "label_prompt": True, "aux_label_weight": 0.0},
        {"lora": {"rank": 8}},
        {"lora": {"r": 0}},
        {"lora": {"dropout": 1.0}},
        {"lora": 8},
    ],
)
def test_bad_model_configs(bad):
    with pytest.raises(ConfigError):
        ReportModelConfig.from_dict(bad)


def test_paper_config_builds_and_trains_one_step_at_reduced_size(tmp_path):
    """configs/ctrate-paper-report.yaml with the LM shrunk and tiny data: build, one optimiser step."""
    from ctvl.report.task import ReportTask
    from ctvl.train import load_config, read_metrics, train
    from tests.report.factory import shared

    art = shared()
    raw = load_config(REPO / "configs" / "ctrate-paper-report.yaml")
    assert raw.model["projector_hidden"] == 4096 and raw.model["lm"]["hidden_size"] == 4096
    assert raw.model["reduction"] == {"kind": "none"}
    assert raw.model["lora"]["r"] == 128 and raw.strategy == "fsdp" and raw.activation_checkpointing
    small = [
        "model.lm.hidden_size=64",
        "model.lm.num_hidden_layers=1",
        "model.lm.num_attention_heads=4",
        "model.lm.num_key_value_heads=2",
        "model.lm.intermediate_size=128",
        "model.lm.max_position_embeddings=1024",
        "model.projector_hidden=256",
        "model.vocab_size=600",
        "model.lora.r=8",
        "steps=1",
        "batch_size=2",
        "micro_batch_size=1",
        "precision=fp32",
        "device=cpu",
        f"output_dir={tmp_path / 'run'}",
        f"data.root={art['data']}",
        f"data.tokenizer={art['tokenizer']}",
        f"data.cache_dir={art['root'] / 'cache'}",
    ]
    cfg = load_config(REPO / "configs" / "ctrate-paper-report.yaml", small)
    result = train(ReportTask(), cfg)
    record = read_metrics(result.metrics_path)[-1]
    assert result.step == 1 and record["loss"] > 0
    weights = read_checkpoint(result.checkpoint)[0]["model"]
    assert any("lora_A" in k for k in weights)  # LoRA adapters on the LM (one process: FSDP has nothing to shard)


def test_any_local_hf_causal_lm_folder_plugs_in(tmp_path, text):
    """``lm_path``: a saved transformers LM + its tokenizer; our special tokens are added and embeddings resized."""
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    plain = Tokenizer.from_str(text.backend.to_str())
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=plain, unk_token="<unk>", pad_token="<pad>")
    hf_tok.save_pretrained(tmp_path / "lm")
    cfg = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "lm")
    hf_text = ReportTextTokenizer.from_pretrained_lm(tmp_path / "lm")
    assert hf_text.kind == "hf" and hf_text.to_dict() == {"kind": "hf", "source": str(tmp_path / "lm")}
    model = ReportModel(
        config=ReportModelConfig.from_dict({"visual_dim": 4, "lm_path": str(tmp_path / "lm")}), text=hf_text
    )
    assert model.lm.get_input_embeddings().num_embeddings == hf_text.vocab_size
    out = model([torch.randn(4, 1, 2, 2)], [torch.tensor(hf_text.target("Normal heart.", "Normal."))])
    assert torch.isfinite(out["loss"])
    assert len(model.eval().generate([torch.randn(4, 1, 2, 2)], max_new_tokens=3)[0]) <= 3
    with pytest.raises(ConfigError):
        ReportModel(config=ReportModelConfig.from_dict({"lm_path": str(tmp_path / "missing")}), text=text)
