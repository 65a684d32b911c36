"""Activations, Maxout, batch-norm folding and batch norm's two modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimlab import nn as onn

X = torch.linspace(-6, 6, 101, dtype=torch.float64)
FORMULAS = {  # each activation's formula, written out
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "relu": lambda x: torch.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "selu": lambda x: 1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772
                                                       * (torch.exp(x) - 1)),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / 2**0.5)),
    "swish": lambda x: x / (1 + torch.exp(-x)),
    "silu": lambda x: x / (1 + torch.exp(-x)),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "softsign": lambda x: x / (1 + x.abs()),
    "hard_sigmoid": lambda x: torch.clamp(x / 6 + 0.5, 0, 1),
    "exponential": torch.exp,
    "linear": lambda x: x,
    "softmax": lambda x: torch.exp(x) / torch.exp(x).sum(),
}


@pytest.mark.parametrize("name", onn.names())
def test_activation_matches_its_formula(name):
    torch.testing.assert_close(onn.get(name)(X), FORMULAS[name](X), rtol=1e-6, atol=1e-7)


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'rellu'.*relu"):
        onn.get("rellu")


def test_maxout_is_the_max_of_its_pieces():
    torch.manual_seed(0)
    layer = onn.Maxout(4, 3, pieces=5)
    x = torch.randn(8, 4)
    pieces = (x @ layer.linear.weight.T + layer.linear.bias).view(8, 3, 5)
    torch.testing.assert_close(layer(x), pieces.max(dim=-1).values)
    with pytest.raises(ValueError, match="pieces=0"):
        onn.Maxout(4, 3, pieces=0)


def _trained_bn(model, x):
    model.train()
    for _ in range(5):
        model(x + torch.randn_like(x))  # moves the running statistics away from (0, 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1, 1)
    return model.eval()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_fold_batchnorm_keeps_outputs_and_drops_modules(kind):
    torch.manual_seed(0)
    if kind == "linear":
        model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                              nn.Linear(8, 4, bias=False), nn.BatchNorm1d(4))
        x = torch.randn(32, 6) * 3 + 1
    else:
        model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(),
                              nn.Sequential(nn.Conv2d(5, 2, 3), nn.BatchNorm2d(2)))
        x = torch.randn(4, 3, 9, 9) * 2 - 1
    model = _trained_bn(model, x)
    folded = onn.fold_batchnorm(model)
    with torch.no_grad():
        expected, actual = model(x), folded(x)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= 1e-5
    count = lambda m: sum(1 for _ in m.modules())  # noqa: E731
    assert count(folded) < count(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())


def test_batchnorm_train_uses_batch_statistics_and_eval_running_averages():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3, momentum=0.1)
    x = torch.randn(64, 3) * 4 + 10
    y = bn.train()(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    # running averages moved 10% of the way from (0, 1) to the batch statistics
    torch.testing.assert_close(bn.running_mean, 0.1 * x.mean(0))
    z = bn.eval()(x)
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(z, expected)
    assert (z - y).abs().max() > 1.0  # the two modes really differ


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_mlp_builder(norm):
    model = onn.MLP(64, [32, 32], 10, activation="tanh", norm=norm, init="glorot_normal",
                    dropout=0.1, skip=True)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert torch.all(model[1].linear.bias == 0)
    assert model[2].skip and not model[1].skip  # equal widths only


def test_builders_switch_batchnorm_modes():
    """In train mode the builders' batch norms use batch statistics; in eval the running ones."""
    torch.manual_seed(0)
    for model, x in ((onn.MLP(4, [8], 2, norm="batch"), torch.randn(16, 4) * 5 + 3),
                     (onn.SmallCNN((1, 8, 8), 3, norm="batch"), torch.randn(16, 1, 8, 8))):
        model.train()
        train_out = model(x)
        bn = next(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
        assert bn.num_batches_tracked == 1
        model.eval()
        eval_out = model(x)
        assert bn.num_batches_tracked == 1
        assert (train_out - eval_out).abs().max() > 1e-3


def test_small_cnn_shapes_and_errors():
    model = onn.SmallCNN((1, 28, 28), 10, skip=True, init="he_normal")
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="norm='layer'"):
        onn.SmallCNN((1, 8, 8), 2, norm="layer")
    with pytest.raises(ValueError, match="dropout=1.5"):
        onn.MLP(2, [2], 2, dropout=1.5)


def test_lstm_language_model_learns_a_corpus():
    from optimlab import data
    from optimlab.optim import Adam

    torch.manual_seed(0)
    corpus = data.text_corpus(level="char")
    model = onn.LSTMLanguageModel(len(corpus.vocab), embed=32, hidden=32, tie_weights=True)
    opt = Adam(model.parameters(), lr=0.01)
    batches = corpus.batches("train", batch_size=16, seq_len=32)
    first = None
    for _, (x, y) in zip(range(60), batches, strict=False):
        loss = model.loss(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(torch.log(torch.tensor(len(corpus.vocab))).item(), rel=0.1)
    assert loss.item() < 0.75 * first
    logits, _ = model(x)
    assert logits.shape == (*x.shape, len(corpus.vocab))


def test_transformer_language_model_is_causal_and_checks_its_arguments():
    torch.manual_seed(0)
    model = onn.TransformerLanguageModel(11, d_model=32, heads=4, layers=2, context=16).eval()
    x = torch.randint(0, 11, (3, 16))
    changed = x.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 11
    logits, after = model(x), model(changed)
    assert logits.shape == (3, 16, 11)
    torch.testing.assert_close(logits[:, :9], after[:, :9], rtol=0, atol=0)  # no look-ahead
    assert (logits[:, 9:] - after[:, 9:]).abs().amax(-1).min() > 0  # and from 9 on
    assert model.output.weight is not model.embedding.weight
    tied = onn.TransformerLanguageModel(11, d_model=32, heads=4, layers=1, context=16,
                                        tie_weights=True)
    assert tied.output.weight is tied.embedding.weight
    y = torch.randint(0, 11, (3, 16))
    assert model.loss(x, y).item() == pytest.approx(
        nn.functional.cross_entropy(logits.reshape(-1, 11), y.reshape(-1)).item(), rel=1e-6)
    with pytest.raises(ValueError, match="longer than the context=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model=30 must be divisible by heads=4"):
        onn.TransformerLanguageModel(11, d_model=30)
    with pytest.raises(ValueError, match="layers=0"):
        onn.TransformerLanguageModel(11, layers=0)
    with pytest.raises(ValueError, match="dropout=1"):
        onn.TransformerLanguageModel(11, dropout=1)


def test_skipgram_loss_and_neighbours():
    from optimlab import data
    from optimlab.optim import Adam

    torch.manual_seed(0)
    # two topics that never mix: words 0-4 co-occur, words 5-9 co-occur
    sentences = [torch.randint(0, 5, (20,)) for _ in range(50)] + \
        [torch.randint(5, 10, (20,)) for _ in range(50)]
    centers, contexts = zip(*(data.skipgram_pairs(s, 2) for s in sentences), strict=True)
    centers, contexts = torch.cat(centers), torch.cat(contexts)
    sampler = data.NegativeSampler(torch.ones(10), seed=0)
    model = onn.SkipGram(10, dim=8)
    opt = Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(100):
        loss = model.loss(centers, contexts, sampler((len(centers), 3)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert set(model.similar(0, top=4).tolist()) == {1, 2, 3, 4}
