"""optimlab.optim.matmul.addmm: torch.addmm's bits, in bfloat16 on a CPU by its own faster form."""

from __future__ import annotations

import pytest
import torch

from optimlab.optim import matmul

from .database import default_dtype

#: (m, k, n), β, α: k not a multiple of 4 (the kernel's remainder goes into its first partial
#: sum), β = 0 (c not read), α ≠ 1; Newton–Schulz's own products (a, b, c = 3.4445, −4.775,
#: 2.0315) on a Gram matrix and a wide matrix.
CASES = [((128, 128, 128), -4.775, 2.0315), ((128, 128, 200), 3.4445, 1.0),
         ((300, 513, 77), 0.5, -1.25), ((96, 130, 90), 0.0, 1.5), ((64, 66, 150), 1.0, 1.0)]


def _operands(m: int, k: int, n: int, dtype=torch.bfloat16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=gen).to(dtype) for shape in ((m, n), (m, k), (k, n)))


@pytest.mark.parametrize(("shape", "beta", "alpha"), CASES, ids=str)
def test_addmm_is_torchs_bit_for_bit(shape, beta, alpha):
    """Whichever form runs (the elementwise one where it reproduces torch, else torch's)."""
    for seed in range(3):
        c, a, b = _operands(*shape, seed=seed)
        assert torch.equal(matmul.addmm(c, a, b, beta=beta, alpha=alpha),
                           torch.addmm(c, a, b, beta=beta, alpha=alpha))


def test_elementwise_form_reproduces_torch_where_it_runs():
    """On a CPU without oneDNN's bfloat16 kernels torch runs the scalar kernel this form
    reproduces: the per-process check passes, and the form itself gives torch's bits."""
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has oneDNN's bfloat16 kernels: torch.addmm runs there")
    assert matmul.reproduces_torch()
    for dtype in (torch.float32, torch.float64):  # its float32 sums whatever the default
        with default_dtype(dtype):
            assert matmul.reproduces_torch.__wrapped__()
            for shape, beta, alpha in CASES:
                c, a, b = _operands(*shape, seed=7)
                assert torch.equal(matmul._emulated(c, a, b, beta, alpha),
                                   torch.addmm(c, a, b, beta=beta, alpha=alpha))


@pytest.mark.parametrize("case", ["float32", "transposed", "small", "requires_grad"])
def test_other_operands_take_torchs_addmm(case, monkeypatch):
    """Operands torch computes another way (or too small to gain) go to torch.addmm itself."""
    monkeypatch.setattr(matmul, "_emulated", lambda *args: pytest.fail("emulated"))
    shape = (16, 16, 16) if case == "small" else (128, 128, 128)
    c, a, b = _operands(*shape, dtype=torch.float32 if case == "float32" else torch.bfloat16)
    if case == "transposed":
        b = b.T.contiguous().T
    if case == "requires_grad":
        a.requires_grad_(True)
    out = matmul.addmm(c, a, b, beta=2.0)
    assert torch.equal(out, torch.addmm(c, a, b, beta=2.0))
