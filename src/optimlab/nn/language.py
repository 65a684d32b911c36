"""Language models: an LSTM language model (characters or words) and skip-gram word2vec with
negative sampling."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["LSTMLanguageModel", "SkipGram"]


class LSTMLanguageModel(nn.Module):
    """Embedding → LSTM → Linear over the vocabulary; ``tie_weights`` shares the embedding and
    output matrices (Press & Wolf 2017; needs ``embed == hidden``)."""

    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 128, layers: int = 1, *,
                 dropout: float = 0.0, tie_weights: bool = False):
        super().__init__()
        if tie_weights and embed != hidden:
            raise ValueError(f"tie_weights needs embed == hidden, got {embed} and {hidden}")
        self.embedding = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, vocab_size)
        if tie_weights:
            self.output.weight = self.embedding.weight

    def forward(self, x: Tensor, state=None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Logits of shape (batch, seq, vocab) and the LSTM state."""
        h, state = self.lstm(self.dropout(self.embedding(x)), state)
        return self.output(self.dropout(h)), state

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy of predicting ``y`` (the next tokens); exp(loss) is perplexity."""
        logits, _ = self(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


class SkipGram(nn.Module):
    r"""Skip-gram word2vec with negative sampling (Mikolov et al., NeurIPS 2013):

    .. math:: \ell = -\log\sigma(u_o^\top v_c) - \sum_{k} \log\sigma(-u_k^\top v_c)

    with input vectors v (``center``) and output vectors u (``context``)."""

    def __init__(self, vocab_size: int, dim: int = 64):
        super().__init__()
        self.center = nn.Embedding(vocab_size, dim)
        self.context = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.center.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)

    def loss(self, center: Tensor, context: Tensor, negatives: Tensor) -> Tensor:
        """Mean loss over a batch: ``center`` and ``context`` (batch,), ``negatives``
        (batch, k)."""
        v = self.center(center)
        positive = F.logsigmoid((self.context(context) * v).sum(-1))
        negative = F.logsigmoid(-(self.context(negatives) @ v.unsqueeze(-1)).squeeze(-1))
        return -(positive + negative.sum(-1)).mean()

    def similar(self, word: int, top: int = 5) -> Tensor:
        """The ``top`` nearest words to ``word`` by cosine similarity of the input vectors."""
        w = F.normalize(self.center.weight, dim=1)
        scores = w @ w[word]
        scores[word] = -torch.inf
        return scores.topk(top).indices
