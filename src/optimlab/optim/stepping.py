"""How a training loop (the Trainer's, the lab's) drives any optimizer, optimlab's or torch's: a
closure for those whose step needs one (L-BFGS), the loss scaled for the backward pass of those
that unscale the gradients in their step (Keras' ``loss_scale_factor``), the train/eval switch
of those that evaluate at another point than they train at (Schedule-Free's
``optimizer.train()`` / ``optimizer.eval()``), and the end of training of those that keep an
average of the weights (Keras' ``use_ema``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["needs_closure", "scale_loss", "step", "mode", "finish"]


def needs_closure(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step`` needs a closure that re-evaluates the loss: optimlab's
    optimizers say so (``needs_closure``), and torch's L-BFGS does."""
    return getattr(optimizer, "needs_closure", isinstance(optimizer, torch.optim.LBFGS))


def scale_loss(optimizer: Optimizer, loss: Tensor) -> Tensor:
    """The loss to back-propagate: ``optimizer.scale_loss(loss)`` for an optimizer that has it
    (Keras' ``loss_scale_factor``, whose step divides the gradients by the factor again; Keras'
    ``Model.fit`` scales every training loss so), else ``loss``."""
    scale = getattr(optimizer, "scale_loss", None)
    return scale(loss) if callable(scale) else loss


def step(optimizer: Optimizer, closure: Callable[[], Tensor]) -> None:
    """``optimizer.step()`` after the caller's backward pass, or ``optimizer.step(closure)``
    for an optimizer whose class sets ``needs_closure`` (``closure`` zeroes the gradients,
    re-evaluates the loss, back-propagates and returns the loss)."""
    if needs_closure(optimizer):
        optimizer.step(closure)
    else:
        optimizer.step()


def mode(optimizer: Optimizer, training: bool) -> None:
    """Put an optimizer with separate training and evaluation points in the wanted mode (its
    ``train()`` / ``eval()`` methods); other optimizers have no modes and are left alone."""
    _call_if_defined(optimizer, "train" if training else "eval")


def finish(optimizer: Optimizer) -> None:
    """The end of training: an optimizer that keeps a moving average of the weights (Keras'
    ``use_ema``) writes it into the parameters, as Keras' ``Model.fit`` calls
    ``finalize_variable_values`` after its last epoch; other optimizers are left alone."""
    _call_if_defined(optimizer, "finalize_variable_values")


def _call_if_defined(optimizer: Optimizer, method: str) -> None:
    """``optimizer.<method>()`` for an optimizer that has the method (the optional parts of
    the protocol above); nothing for one that has not."""
    bound = getattr(optimizer, method, None)
    if callable(bound):
        bound()
