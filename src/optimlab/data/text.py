"""A text corpus for character/word language models and word2vec, from any text file or, by
default, from the docstrings of a fixed list of Python standard-library modules (no download)."""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Corpus", "text_corpus", "default_text", "skipgram_pairs", "NegativeSampler"]

#: the modules whose documentation makes the default corpus
DEFAULT_MODULES = (
    "abc", "argparse", "bisect", "calendar", "collections", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fractions", "functools", "heapq", "inspect",
    "itertools", "json", "logging", "pathlib", "pickle", "pprint", "queue", "random", "re",
    "shutil", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap",
    "threading", "typing", "unittest", "urllib.parse", "zipfile",
)
LEVELS = ("char", "word")


def default_text() -> str:
    """The docstrings of :data:`DEFAULT_MODULES` and their public members, in a fixed order
    (about 200,000 characters of English; the exact text follows the Python version)."""
    parts = []
    with warnings.catch_warnings():  # typing.io and typing.re are deprecated aliases
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in DEFAULT_MODULES:
            module = importlib.import_module(name)
            docs = [inspect.getdoc(module) or ""]
            for member_name in sorted(n for n in dir(module) if not n.startswith("_")):
                member = getattr(module, member_name, None)
                if inspect.isclass(member) or inspect.isfunction(member):
                    docs.append(inspect.getdoc(member) or "")
            parts.extend(d for d in docs if d)
    return "\n\n".join(parts)


@dataclass
class Corpus:
    """Token ids split by position (train first, then validation, then test)."""

    vocab: list[str]
    train: Tensor
    val: Tensor
    test: Tensor
    level: str

    @property
    def counts(self) -> Tensor:
        """How often each token occurs in the training split."""
        return torch.bincount(self.train, minlength=len(self.vocab))

    def decode(self, ids: Tensor) -> str:
        sep = "" if self.level == "char" else " "
        return sep.join(self.vocab[i] for i in ids.tolist())

    def batches(self, split: str = "train", *, batch_size: int = 32, seq_len: int = 64,
                seed: int | None = 0):
        """(inputs, targets) pairs of shape (batch, seq_len), targets shifted by one token; the
        order of the windows is shuffled with ``seed`` (None keeps it)."""
        ids = getattr(self, split)
        windows = (len(ids) - 1) // seq_len
        if windows < 1:
            raise ValueError(f"the {split} split has {len(ids)} tokens, fewer than seq_len + 1")
        x = ids[: windows * seq_len].view(windows, seq_len)
        y = ids[1: windows * seq_len + 1].view(windows, seq_len)
        order = torch.arange(windows) if seed is None else torch.randperm(
            windows, generator=torch.Generator().manual_seed(seed))
        for start in range(0, windows, batch_size):
            index = order[start:start + batch_size]
            yield x[index], y[index]


def _tokens(text: str, level: str) -> list[str]:
    if level == "char":
        return list(text)
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


def text_corpus(path: str | None = None, *, level: str = "char", val: float = 0.05,
                test: float = 0.05, min_count: int = 1) -> Corpus:
    """Tokenize a text file (or :func:`default_text`) into characters or lower-cased words.

    Words seen fewer than ``min_count`` times become ``"<unk>"``.
    """
    if level not in LEVELS:
        raise ValueError(f"level={level!r} is not one of {', '.join(LEVELS)}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val={val!r} and test={test!r} must be fractions with val + test < 1")
    if path is None:
        text = default_text()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    tokens = _tokens(text, level)
    if len(tokens) < 100:
        raise ValueError(f"the text has {len(tokens)} tokens; at least 100 are needed")
    counts = Counter(tokens)
    vocab = sorted(t for t, c in counts.items() if c >= min_count)
    if len(vocab) < len(counts):
        vocab = ["<unk>", *vocab]
    index = {t: i for i, t in enumerate(vocab)}
    unk = index.get("<unk>", 0)
    ids = torch.tensor([index.get(t, unk) for t in tokens], dtype=torch.long)
    n_test, n_val = int(len(ids) * test), int(len(ids) * val)
    n_train = len(ids) - n_val - n_test
    return Corpus(vocab, ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:],
                  level)


def skipgram_pairs(ids: Tensor, window: int = 2) -> tuple[Tensor, Tensor]:
    """(center, context) pairs of every token with each neighbour at most ``window`` away."""
    if window < 1:
        raise ValueError(f"window={window!r} must be >= 1")
    centers, contexts = [], []
    for offset in range(1, window + 1):
        centers += [ids[:-offset], ids[offset:]]
        contexts += [ids[offset:], ids[:-offset]]
    return torch.cat(centers), torch.cat(contexts)


class NegativeSampler:
    """Draws negative words from the unigram distribution raised to ``power`` (0.75 in
    Mikolov et al., NeurIPS 2013)."""

    def __init__(self, counts: Tensor, power: float = 0.75, seed: int = 0):
        weights = counts.double().clamp(min=0) ** power
        if weights.sum() <= 0:
            raise ValueError("counts must have a positive entry")
        self.probabilities = weights / weights.sum()
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, shape: tuple[int, ...]) -> Tensor:
        n = int(torch.tensor(shape).prod().item())
        draws = torch.multinomial(self.probabilities, n, replacement=True,
                                  generator=self.generator)
        return draws.view(shape)
