"""The text corpus, skip-gram pairs and negative sampling."""

from __future__ import annotations

import pytest
import torch

from optimlab import data


@pytest.fixture(scope="module")
def chars():
    return data.text_corpus(level="char")


def test_default_corpus_needs_no_download_and_is_fixed(chars):
    assert len(chars.train) > 100_000 and len(chars.val) > 1000 and len(chars.test) > 1000
    assert 50 <= len(chars.vocab) <= 200
    again = data.text_corpus(level="char")
    assert torch.equal(again.train, chars.train)
    assert "Return" in chars.decode(chars.train[:5000])


def test_word_level_and_any_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("the cat sat on the mat . " * 30 + "a rare word")
    corpus = data.text_corpus(str(path), level="word", min_count=2, val=0.1, test=0.1)
    assert "<unk>" in corpus.vocab and "cat" in corpus.vocab and "rare" not in corpus.vocab
    assert corpus.decode(corpus.train[:6]) == "the cat sat on the mat"
    with pytest.raises(ValueError, match="level='byte'"):
        data.text_corpus(str(path), level="byte")


def test_language_model_batches_are_shifted_by_one(chars):
    x, y = next(chars.batches("train", batch_size=4, seq_len=16, seed=None))
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[0, 1:], y[0, :-1])
    assert torch.equal(x[0], chars.train[:16])


def test_skipgram_pairs_and_negative_sampling():
    ids = torch.tensor([0, 1, 2, 3])
    centers, contexts = data.skipgram_pairs(ids, window=1)
    assert set(zip(centers.tolist(), contexts.tolist(), strict=True)) == {
        (0, 1), (1, 2), (2, 3), (1, 0), (2, 1), (3, 2)}
    counts = torch.tensor([100.0, 10.0, 1.0, 0.0])
    sampler = data.NegativeSampler(counts, power=0.75, seed=0)
    draws = sampler((200_000,))
    frequency = torch.bincount(draws, minlength=4).double() / 200_000
    expected = counts.double() ** 0.75 / (counts.double() ** 0.75).sum()
    assert (frequency - expected).abs().max() < 0.005  # 200k draws: std error < 0.0012
