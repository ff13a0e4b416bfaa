"""The frozen MiniLM text encoder: offline load, context shapes, empty prompts, the word-piece cut."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import InputError
from ctvl.synthesis.text import TEXT_DIM, TextEncoder, minilm_path


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(max_tokens=16)


def test_model_comes_from_the_installed_package():
    assert (minilm_path() / "model.safetensors").is_file()


def test_context_is_pooled_embedding_then_word_pieces(encoder: TextEncoder):
    short, empty, blank = encoder.encode(["cardiomegaly", "", "   "])
    n = encoder.count_tokens("cardiomegaly")  # [CLS] + pieces + [SEP]
    assert short.shape == (1 + n, TEXT_DIM)
    assert torch.allclose(short[0], short[1:].mean(0), atol=1e-5)  # the first row is the mean of the rest
    assert empty.shape == blank.shape == (0, TEXT_DIM)


def test_long_prompts_are_cut_and_batching_does_not_change_results(encoder: TextEncoder):
    long = "right pleural effusion " * 20
    alone = encoder.encode([long])[0]
    together = encoder.encode(["nodule", long, "emphysema in both upper lobes"], batch_size=2)[1]
    assert alone.shape == (1 + 16, TEXT_DIM) and encoder.count_tokens(long) > 16
    assert torch.allclose(alone, together, atol=1e-4)


def test_different_findings_give_different_contexts(encoder: TextEncoder):
    a, b = encoder.encode(["pleural effusion", "no pleural effusion"])
    assert not torch.allclose(a[0], b[0], atol=1e-2)


def test_max_tokens_is_checked():
    with pytest.raises(InputError, match="max_tokens"):
        TextEncoder(max_tokens=1000)
