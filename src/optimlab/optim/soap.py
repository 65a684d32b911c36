"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner, as the authors' implementation.

:class:`ShampooEigenbasis` (a ``scope = "tensor"`` transform: Shampoo's statistics and their
eigenbases per dimension, and any elementwise transform run in that basis) makes up
:class:`SOAP` with the algebra's Adam moments, bias corrections and weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .optimizer import Optimizer
from .transforms import (
    UNIT,
    Adapt,
    AverageGradient,
    BiasCorrection,
    Chain,
    Delayed,
    FixedWeightDecay,
    LearningRate,
    NormalizeRms,
    Transform,
    hyper,
    outside_graphs,
)

__all__ = ["ShampooEigenbasis", "SOAP"]

#: the most dimensions (after merging) a preconditioned tensor may have: each has its own
#: statistic ``GG.{k}`` and basis ``Q.{k}`` in the state.
MAX_DIMS = 8
DATA_FORMATS = ("channels_first", "channels_last")


def merge_small_dims(shape: tuple[int, ...], limit: int) -> list[int]:
    """Neighbouring dimensions merged while their product stays at most ``limit``, as
    pytorch_optimizer's ``merge_small_dims`` ([1, 2, 768, 1, 2048] → [2, 768, 2048]); a tensor
    whose whole size fits becomes one dimension (pytorch_optimizer returns [1] there, which
    fails to reshape any tensor of more than one element)."""
    merged: list[int] = []
    product = 1
    for dim in shape:
        product *= dim
        if product > limit:
            merged.append(product // dim)
            product = dim
    merged.append(product)
    return merged


class ShampooEigenbasis(Transform):
    r"""Elementwise transforms run in the eigenbasis of Shampoo's preconditioner.

    For a tensor with (working) dimensions :math:`d_1, \dots, d_n`, each dimension k of size
    at most ``max_precondition_dim`` keeps Shampoo's statistic and an orthogonal basis of it:

    .. math::
        L_k \leftarrow \beta_s L_k + (1-\beta_s)\, G_{(k)} G_{(k)}^\top, \qquad
        \hat x = x \times_1 Q_1^\top \cdots \times_n Q_n^\top, \qquad
        \text{out} = \text{inner}(\hat u, \hat g) \times_1 Q_1 \cdots \times_n Q_n

    (:math:`G_{(k)}` the mode-k unfolding of the gradient, :math:`\times_k` the mode-k
    product; a larger dimension keeps the identity). ``inner`` is one elementwise transform or
    a sequence of them (a chain); its buffers live in the basis. With ``inner`` Adam's first
    and second moments (:class:`~optimlab.optim.transforms.AverageGradient`,
    :class:`~optimlab.optim.transforms.Adapt`) this is SOAP. The statistics move after the
    direction is computed, with the gradient of this step; the first gradient
    (:meth:`warmup`, inside :class:`~optimlab.optim.transforms.Delayed`) sets
    :math:`Q_k` to the eigenvectors of :math:`L_k` (``torch.linalg.eigh`` of
    :math:`L_k + 10^{-30}I`, eigenvalues descending); every ``precondition_frequency`` steps
    after, one step of power iteration refreshes it: with :math:`P = L_k Q_k`, the columns
    sorted by the estimated eigenvalues :math:`\operatorname{diag}(Q_k^\top P)` (descending),
    :math:`Q_k \leftarrow \operatorname{qr}(P)` (in float32, as the reference). The inner
    buffers named in ``rotated`` — linear in the gradients they averaged, as Adam's first
    moment :math:`\hat m` — are rotated into the new basis,
    :math:`\hat m \leftarrow (\hat m \times_k Q_k^{-\top}) \times_k Q_k'^\top` (the inverse, not
    the transpose: the float32 QR makes :math:`Q_k` orthogonal only to float32 rounding), so
    they equal the average of the gradients projected into it; the others (Adam's :math:`v`,
    quadratic in them) are only permuted the same way as the columns, SOAP's approximation.
    β_s = ``shampoo_beta``, or ``betas[1]`` when None.

    SOAP's reference keeps :math:`m` in the parameter's basis and projects it at each step;
    kept in the basis and rotated at a refresh instead, it is the same :math:`\hat m_t =
    m_t \times_k Q_k^\top` to rounding, for an inverse and two products per dimension at a
    refresh instead of two products at every step: 6 products a step for a matrix instead of 8.
    The bases themselves (from the gradients alone) keep the reference's bits.

    One-dimensional tensors are preconditioned only with ``precondition_1d``. With
    ``merge_dims`` neighbouring dimensions are merged while their product stays at most
    ``max_precondition_dim`` (:func:`merge_small_dims`; ``channels_last`` permutes a 4-D
    tensor NHWC → NCHW first); a tensor whose whole size fits becomes one dimension.

    The matrix products are taken one tensor of the stack at a time, with the reference's own
    ``torch.tensordot`` calls, so that every engine and the reference get the same bases: while
    a statistic is rank-deficient (its first steps) the basis of its null space is decided by
    rounding, and batched products, which round differently, would pick another one.
    ``eigh`` and ``qr`` run batched over the stack (their results per matrix are the same).
    For the same reason the matrix work runs outside ``torch.compile``
    (disabled for the compiler, as ``torch.compiler.disable`` does: the compiler's lowering
    of small products rounds otherwise), and the compiled engines run SOAP eager
    (:attr:`~optimlab.optim.transforms.Transform.fuses` is False: the products dominate the
    step, and fusing the elementwise rest around the graph breaks of the matrix work cost more
    than it saved).

    Group keys: ``shampoo_beta``, ``betas.1``, ``precondition_frequency`` (an integer ≥ 1),
    ``max_precondition_dim`` (an integer ≥ 1), ``precondition_1d``, ``merge_dims``, and the
    inner transform's. State: ``GG.{k}`` and ``Q.{k}`` for each preconditioned dimension k,
    and the inner transform's. Reference: Vyas et al., "SOAP: Improving and Stabilizing
    Shampoo using Adam", ICLR 2025, Algorithms 3 and 4 (github.com/nikhilvyas/SOAP; its port
    ``pytorch_optimizer.SOAP``).
    """

    scope = "tensor"
    fuses = False

    def __init__(self, inner: Transform | Sequence[Transform], channels_last: bool = False,
                 rotated: Sequence[str] = ()):
        if not isinstance(inner, Transform):
            inner = Chain(inner)
        if inner.scope != "element" or inner.reduces:
            raise ValueError(f"inner={inner!r} must be elementwise transforms without a "
                             f"reduction: they run on the coordinates of the eigenbasis")
        unknown = [name for name in rotated if name not in inner.state]
        if unknown:
            raise ValueError(f"rotated={tuple(rotated)!r}: {unknown} are not buffers of "
                             f"inner={inner!r}, whose state is {inner.state}")
        self.inner = inner
        if channels_last:  # only then, so that the default keeps its repr
            self.channels_last = True
        if rotated:
            self.rotated = tuple(rotated)
        self.linear = inner.linear
        self.hyperparameters = {**inner.hyperparameters, "shampoo_beta": UNIT,
                                "precondition_frequency": "[1, inf)",
                                "max_precondition_dim": "[1, inf)"}
        self.flags = (*inner.flags, "precondition_1d", "merge_dims")
        self.state = (*(f"{name}.{k}" for name in ("GG", "Q") for k in range(MAX_DIMS)),
                      *inner.state)

    def validate(self, group):
        super().validate(group)
        self.inner.validate(group)
        for key in ("precondition_frequency", "max_precondition_dim"):
            value = hyper(group, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{key}={value!r} must be an integer >= 1")

    # ------------------------------------------------------------------ shapes and dimensions
    def _working(self, shape: tuple[int, ...], hp) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(the working shape, the preconditioned dimensions) of a tensor of ``shape``."""
        limit = int(hp["max_precondition_dim"])
        if len(shape) == 1:
            keep = hp.on("precondition_1d") and shape[0] <= limit
            return shape, (0,) if keep else ()
        if hp.on("merge_dims") and len(shape) > 1:
            if self._permutes(shape):
                shape = (shape[0], shape[3], shape[1], shape[2])
            shape = tuple(merge_small_dims(shape, limit))
        return shape, tuple(k for k, d in enumerate(shape) if d <= limit)

    def _permutes(self, shape) -> bool:
        return getattr(self, "channels_last", False) and len(shape) == 4

    def _to_working(self, x: Tensor, hp) -> Tensor:
        """One tensor (not a stack) in its working shape."""
        if x.dim() <= 1 or not hp.on("merge_dims"):
            return x
        shape = self._working(tuple(x.shape), hp)[0]
        if self._permutes(x.shape):
            x = x.permute(0, 3, 1, 2)
        return x.reshape(shape)

    def _from_working(self, x: Tensor, shape: torch.Size, hp) -> Tensor:
        """The inverse of :meth:`_to_working` for a tensor of ``shape``."""
        if len(shape) > 1 and hp.on("merge_dims"):
            if self._permutes(shape):
                return x.reshape(shape[0], shape[3], shape[1], shape[2]).permute(0, 2, 3, 1)
            return x.reshape(shape)
        return x

    def init(self, p, hp):
        shape, dims = self._working(tuple(p.shape), hp)
        if len(shape) > MAX_DIMS and dims:
            raise ValueError(f"a parameter of shape {tuple(p.shape)} has {len(shape)} "
                             f"dimensions to precondition; at most {MAX_DIMS} are supported")
        buffers = dict(self.inner.init(p, hp))
        for k in dims:
            d = shape[k]
            buffers[f"GG.{k}"] = torch.zeros(d, d, dtype=p.dtype, device=p.device)
            buffers[f"Q.{k}"] = torch.zeros(d, d, dtype=p.dtype, device=p.device)
        return buffers

    # ---------------------------------------------------------------------------- the math
    @outside_graphs
    def _project(self, x: Tensor, s, hp, dims, backward: bool = False,
                 bases: dict[int, Tensor] | None = None) -> Tensor:
        """Each tensor of the stack ``x`` into the eigenbasis (or back), as the reference's
        ``project``: a ``tensordot`` per dimension (a permutation for an unpreconditioned one),
        which leaves the dimensions in their order. ``bases`` (dimension → stack of matrices)
        replaces the state's ``Q.{k}``."""
        bases = bases or {k: s[f"Q.{k}"] for k in dims}
        out = []
        for b in range(x.shape[0]):
            y = self._to_working(x[b], hp)
            for k in range(y.dim()):
                if k in dims:
                    y = torch.tensordot(y, bases[k][b], dims=[[0], [1 if backward else 0]])
                else:
                    y = y.permute([*range(1, y.dim()), 0])
            out.append(self._from_working(y, x.shape[1:], hp))
        # a stack of one (a large tensor) as a view: the products made it, nothing aliases it
        return out[0].unsqueeze(0) if len(out) == 1 else torch.stack(out)

    @outside_graphs
    def _accumulate(self, g: Tensor, s, hp, dims) -> None:
        """L_k ← β_s L_k + (1 − β_s) G_(k) G_(k)ᵀ for every preconditioned dimension."""
        beta = hp.get("shampoo_beta")
        weight = 1.0 - (hp["betas.1"] if beta is None else beta)
        for b in range(g.shape[0]):
            y = self._to_working(g[b], hp)
            for k in dims:
                if y.dim() == 1:
                    outer = y.unsqueeze(1) @ y.unsqueeze(0)
                else:
                    others = [i for i in range(y.dim()) if i != k]
                    outer = torch.tensordot(y, y, dims=[others, others])
                s[f"GG.{k}"][b].lerp_(outer, weight)

    @outside_graphs
    def warmup(self, g, s, p, hp):
        _, dims = self._working(tuple(g.shape[1:]), hp)
        self._accumulate(g, s, hp, dims)
        for k in dims:
            statistic = s[f"GG.{k}"]
            eye = torch.eye(statistic.shape[-1], dtype=statistic.dtype, device=statistic.device)
            s[f"Q.{k}"].copy_(torch.flip(_eigenvectors(statistic + 1e-30 * eye), dims=[-1]))

    def prepare(self, s, hp, step):
        return {"inner": self.inner.prepare(s, hp, step),
                "refresh": step % int(hp["precondition_frequency"]) == 0}

    def update(self, u, g, s, p, hp, c):
        _, dims = self._working(tuple(u.shape[1:]), hp)
        u_basis, g_basis = u, g
        if dims:  # the gradient is projected once where it is the incoming direction too
            g_basis = self._project(g, s, hp, dims)
            u_basis = g_basis if u is g else self._project(u, s, hp, dims)
        out = self.inner.update(u_basis, g_basis, s, p, hp, c["inner"])
        out, factor = out if isinstance(out, tuple) else (out, None)
        if dims:
            out = self._project(out, s, hp, dims, backward=True)
        self._accumulate(g, s, hp, dims)
        if dims and c["refresh"]:
            self._refresh(s, hp, dims, u.shape)
        return out if factor is None else (out, factor)

    @outside_graphs
    def _refresh(self, s, hp, dims, shape) -> None:
        """One step of power iteration per dimension, as the reference's
        ``get_orthogonal_matrix_qr``; the inner buffers permuted with the eigenvalues' order,
        the ``rotated`` ones rotated into the new basis."""
        rotated = getattr(self, "rotated", ())
        # x̂ = x ×_k Q_kᵀ, so x = x̂ ×_k Q_k⁻ᵀ: Q_k is orthogonal only to the float32 rounding
        # of its QR, and Q_k's transpose would miss the reference's x̂ by as much (1e-7
        # relative in float64)
        inverses = {k: torch.linalg.inv(s[f"Q.{k}"]) for k in dims} if rotated else {}
        unrotated = {name: self._project(s[name], s, hp, dims, bases=inverses)
                     for name in rotated}
        inner = [name for name in self.inner.state if name in s and name not in rotated]
        working = {name: [self._to_working(s[name][b], hp) for b in range(shape[0])]
                   for name in inner}
        for k in dims:
            statistic, basis = s[f"GG.{k}"], s[f"Q.{k}"]
            powers = []
            for b in range(shape[0]):
                product = statistic[b] @ basis[b]
                estimate = (basis[b] * product).sum(dim=0)
                order = torch.argsort(estimate, descending=True)
                for name in inner:
                    working[name][b] = working[name][b].index_select(k, order)
                powers.append(product.index_select(1, order))
            power = torch.stack(powers)
            basis.copy_(torch.linalg.qr(power.to(torch.float32)).Q.to(power.dtype))
        for name in inner:
            for b in range(shape[0]):
                s[name][b].copy_(self._from_working(working[name][b], shape[1:], hp))
        for name, value in unrotated.items():
            s[name].copy_(self._project(value, s, hp, dims))


def _eigenvectors(matrix: Tensor) -> Tensor:
    """``torch.linalg.eigh``'s eigenvectors, retried in float64 where a lower precision fails
    to converge, as the reference."""
    if torch.compiler.is_compiling():
        return torch.linalg.eigh(matrix).eigenvectors
    try:
        return torch.linalg.eigh(matrix).eigenvectors
    except torch.linalg.LinAlgError:
        return torch.linalg.eigh(matrix.to(torch.float64)).eigenvectors.to(matrix.dtype)


class SOAP(Optimizer):
    r"""SOAP (ShampoO with Adam in the Preconditioner's eigenbasis): Adam whose second moment
    is kept in the eigenbasis of Shampoo's preconditioner, refreshed every few steps.

    With :math:`Q_k` the eigenbases of :class:`ShampooEigenbasis` (per dimension of the
    tensor) and :math:`\hat x = x \times_1 Q_1^\top \cdots` the projection into them:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\hat g_t^{\,2},\quad
        n_t = \Bigl(\frac{\hat m_t}{\sqrt{v_t} + \epsilon}\Bigr) \times_1 Q_1 \cdots,\\
        p_t = \Bigl(p_{t-1} - \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\, n_t\Bigr)
              (1 - \eta\lambda)

    (both moments are kept in the basis; at a refresh :math:`\hat m` is rotated into the new
    one, where the reference keeps :math:`m` in the parameter's basis and projects it at each
    step: the same numbers to rounding, with 6 matrix products a step for a matrix instead of
    8).
    ``correct_bias=False`` leaves out the factor :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t)`;
    ``normalize_gradient=True`` divides :math:`n_t` by its RMS + ε first. The first gradient
    only initializes the preconditioner (:math:`Q_k` from ``eigh``) and makes no step, and t
    counts from the next one (:class:`~optimlab.optim.transforms.Delayed`); every
    ``precondition_frequency`` steps a step of power iteration with QR refreshes the bases.
    Weight decay is decoupled and applied after the step, as the reference;
    ``decoupled_weight_decay=False`` adds λp to the gradient instead (an option the reference
    does not have).

    Defaults (the reference's): ``lr=3e-3, betas=(0.95, 0.95), shampoo_beta=None (β₂),
    weight_decay=0.01, precondition_frequency=10, max_precondition_dim=10000,
    merge_dims=False, precondition_1d=False, correct_bias=True, normalize_gradient=False,
    data_format="channels_first", eps=1e-8``. ``data_format`` (``"channels_last"``: a 4-D
    tensor is NHWC, permuted before its dimensions are merged) only matters with
    ``merge_dims``, and is fixed when the optimizer is built, as the reference keeps it on the
    optimizer. State: ``step``, ``exp_avg``, ``exp_avg_sq`` (both in the eigenbasis), ``GG.{k}``
    and ``Q.{k}`` per preconditioned dimension k (the reference's lists ``GG`` and ``Q``).

    Reference: Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson, Kakade, "SOAP:
    Improving and Stabilizing Shampoo using Adam", ICLR 2025; equal to
    ``pytorch_optimizer.SOAP`` (4.1.0, a port of the authors' github.com/nikhilvyas/SOAP) step
    by step. Differences, on purpose: each parameter counts its own steps, as torch.optim (the
    reference counts the group's, so a parameter whose first gradient comes later steps with
    it at once; here it only initializes its preconditioner, as every parameter's first
    gradient does); the user's gradients are not modified (the reference negates ``.grad`` in
    place with ``maximize``); with ``merge_dims`` a tensor whose whole size is at most
    ``max_precondition_dim`` is preconditioned as one dimension (the reference fails to
    reshape it); ``shampoo_beta`` must be in [0, 1] (the reference takes any β ≥ 0). Complex
    and sharded (DTensor) parameters are refused. The keras flavor is the same algorithm with
    Keras' clipping formulas (Keras has no SOAP).
    """

    _DEFAULTS = {"lr": 3e-3, "betas": (0.95, 0.95), "shampoo_beta": None,
                 "weight_decay": 1e-2, "precondition_frequency": 10,
                 "max_precondition_dim": 10000, "merge_dims": False, "precondition_1d": False,
                 "correct_bias": True, "normalize_gradient": False, "eps": 1e-8,
                 "decoupled_weight_decay": True}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, shampoo_beta: float | None = None,
                 weight_decay: float | None = None, precondition_frequency: int | None = None,
                 max_precondition_dim: int | None = None, merge_dims: bool | None = None,
                 precondition_1d: bool | None = None, correct_bias: bool | None = None,
                 normalize_gradient: bool | None = None, data_format: str = "channels_first",
                 eps: float | None = None, **options: Any):
        if data_format not in DATA_FORMATS:
            raise ValueError(f"data_format={data_format!r} is not allowed: choose one of "
                             f"{', '.join(DATA_FORMATS)}")
        self.data_format = data_format
        super().__init__(params, self._chain(data_format == "channels_last"), lr=lr,
                         betas=betas, shampoo_beta=shampoo_beta, weight_decay=weight_decay,
                         precondition_frequency=precondition_frequency,
                         max_precondition_dim=max_precondition_dim, merge_dims=merge_dims,
                         precondition_1d=precondition_1d, correct_bias=correct_bias,
                         normalize_gradient=normalize_gradient, eps=eps, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Delayed:
        return cls._chain(channels_last=False)

    @staticmethod
    def _chain(channels_last: bool) -> Delayed:
        return Delayed([ShampooEigenbasis([AverageGradient("betas.0", bias_correction=False),
                                           Adapt("ema", "betas.1", eps="after_root")],
                                          channels_last=channels_last, rotated=("exp_avg",)),
                        NormalizeRms("normalize_gradient"),
                        BiasCorrection("betas.0", switch="correct_bias"),
                        BiasCorrection("betas.1", power=-0.5, switch="correct_bias"),
                        LearningRate(), FixedWeightDecay(after_update=True)], steps=1)

