"""Language models: an LSTM language model and a small decoder-only transformer (characters or
words), and skip-gram word2vec with negative sampling."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["LSTMLanguageModel", "TransformerLanguageModel", "SkipGram"]


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


class _CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions ≤ t only."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, seq, d = x.shape
        q, k, v = (t.view(batch, seq, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(d, dim=-1))
        h = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(h.transpose(1, 2).reshape(batch, seq, d))


class _Block(nn.Module):
    """Pre-norm block: x ← x + Attn(LN(x)); x ← x + MLP(LN(x))."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = _CausalSelfAttention(d_model, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class TransformerLanguageModel(nn.Module):
    r"""A decoder-only transformer language model with pre-norm blocks (GPT-2's layout):

    .. math::
        h_0 = E[x_t] + P[t], \quad
        h \leftarrow h + \mathrm{Attn}_{\text{causal}}(\mathrm{LN}(h)), \quad
        h \leftarrow h + W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(h)), \quad
        \text{logits} = \mathrm{LN}(h)\,W_{\text{out}}^\top

    with learned token (E) and position (P) embeddings, ``layers`` blocks of ``heads``-head
    causal self-attention (Vaswani et al., NeurIPS 2017) and an MLP of width
    ``mlp_ratio · d_model``; ``tie_weights`` makes W_out = E (Press & Wolf 2017). Weights
    start at N(0, 0.02²), the residual projections at N(0, 0.02² / (2 · layers)), biases at 0
    (Radford et al. 2019).

    Args:
        vocab_size: tokens in the vocabulary.
        d_model: width of the residual stream (divisible by ``heads``).
        heads: attention heads.
        layers: blocks.
        context: the longest sequence (positions with an embedding).
        mlp_ratio: the MLP's hidden width over ``d_model``.
        dropout: on the attention weights and on each block's two residual branches.
        tie_weights: share the embedding and output matrices.
    """

    def __init__(self, vocab_size: int, d_model: int = 128, heads: int = 4, layers: int = 4,
                 context: int = 64, *, mlp_ratio: int = 4, dropout: float = 0.0,
                 tie_weights: bool = False):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("heads", heads),
                            ("layers", layers), ("context", context), ("mlp_ratio", mlp_ratio)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
        self.context = context
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, heads, mlp_ratio, dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for projection in (block.attention.out, block.mlp[2]):
                nn.init.normal_(projection.weight, std=0.02 / (2 * layers) ** 0.5)
        if tie_weights:
            self.output.weight = self.embedding.weight

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the next token at every position, shape (batch, seq, vocab)."""
        if x.shape[-1] > self.context:
            raise ValueError(f"sequences of {x.shape[-1]} tokens are longer than the "
                             f"context={self.context}")
        positions = torch.arange(x.shape[-1], device=x.device)
        h = self.dropout(self.embedding(x) + self.position(positions))
        for block in self.blocks:
            h = block(h)
        return self.output(self.norm(h))

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy (nats) of predicting ``y`` (the next tokens)."""
        logits = self(x)
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
