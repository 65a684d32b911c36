"""The three results often quoted for optimizers, re-run on our offline problems, with what we
observe stated plainly — agreeing or not:

* on MNIST, adaptive methods beat SGD and momentum (Kingma & Ba 2015, figure 2);
* on word2vec, L2 adaptation (Adagrad, RMSprop, Adam) beats plain and momentum SGD
  (Mikolov et al. and many since; sparse word frequencies favour per-coordinate rates);
* on an LSTM language model, plain momentum SGD is competitive with the adaptive methods
  (Wilson et al., NeurIPS 2017).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .protocol import Summary, sweep

__all__ = ["CLAIMS", "Claim", "verdict", "run"]

ADAPTIVE = ("adagrad", "rmsprop", "adam")
PLAIN = ("sgd", "momentum")


@dataclass(frozen=True)
class Claim:
    task: str
    statement: str
    optimizers: tuple[str, ...]
    lrs: tuple[float, ...]
    kind: str  # "adaptive wins" or "momentum competitive"


CLAIMS = (
    Claim("mnist_cnn", "on MNIST, adaptive methods win", PLAIN + ADAPTIVE,
          (1e-3, 1e-2, 0.1), "adaptive wins"),
    Claim("word2vec", "on word2vec, L2 adaptation wins", PLAIN + ADAPTIVE,
          (1e-2, 0.1, 1.0), "adaptive wins"),
    Claim("char_lstm", "on an LSTM language model, plain momentum is competitive",
          PLAIN + ADAPTIVE, (1e-3, 1e-2, 0.1, 1.0), "momentum competitive"),
)


def verdict(claim: Claim, summaries: Sequence[Summary], tolerance: float = 0.05) -> str:
    """What we observe about ``claim`` from the tuned, seed-averaged final test metrics."""
    score = {s.optimizer: s.mean for s in summaries if s.problem == claim.task}
    best_adaptive = min((score[o], o) for o in ADAPTIVE if o in score)
    best_plain = min((score[o], o) for o in PLAIN if o in score)
    if claim.kind == "adaptive wins":
        agrees = best_adaptive[0] < best_plain[0]
        return (f"{'agrees' if agrees else 'disagrees'}: best adaptive {best_adaptive[1]} "
                f"{best_adaptive[0]:.4g} vs best of SGD/momentum {best_plain[1]} "
                f"{best_plain[0]:.4g}")
    best = min(score.values())
    momentum = score.get("momentum", float("inf"))
    agrees = momentum <= best + tolerance * abs(best)
    return (f"{'agrees' if agrees else 'disagrees'}: momentum {momentum:.4g} vs best "
            f"{min(score, key=score.get)} {best:.4g} (competitive = within "
            f"{tolerance:.0%})")


def run(claims: Sequence[Claim] = CLAIMS, *, seeds: int = 2,
        on_run: Callable | None = None) -> list[tuple[Claim, str, list[Summary]]]:
    """Tune, re-run with seeds and judge every claim."""
    out = []
    for claim in claims:
        summaries = sweep([claim.task], list(claim.optimizers), list(claim.lrs), seeds=seeds,
                          on_run=on_run)
        out.append((claim, verdict(claim, summaries), summaries))
    return out
