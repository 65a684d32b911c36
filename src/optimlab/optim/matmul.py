"""``torch.addmm`` of bfloat16 matrices on a CPU, bit for bit as torch computes it, faster.

On a CPU without native bfloat16 arithmetic (oneDNN's bfloat16 kernels off:
``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is False, e.g. AVX2 without AVX512-BF16 or
AMX), torch computes ``torch.addmm(c, a, b, beta=β, alpha=α)`` of row-major bfloat16 matrices
with its scalar fallback (``gemm_notrans_`` in ATen/native/cpu/BlasKernel.cpp). For each
output element it takes the products ``a[i, l]·b[l, j]`` in float32 in the order of l, summed
into four partial sums s₀…s₃ (term l into s_(l mod 4), the last k mod 4 terms into s₀), adds
them as ((s₀ + s₁) + s₂) + s₃ = d, and rounds β·c + α·d (one rounding: the compiler fuses it
into fma(β, c, α·d)) to bfloat16. It reads b with a stride of a row per term, about
1 GFLOP/s on a 2-core EPYC: 235 ms for one 512×512 product, against 3 ms in float32. Muon's
Newton–Schulz iteration in bfloat16 (torch's, and so ours) makes two such products per step
and matrix (its third, X·Xᵀ, takes torch's fast transposed path).

:func:`addmm` does the same arithmetic as elementwise operations over the output, a block of
rows at a time: a product of two bfloat16 numbers is exact in float32, so each step
``s[l mod 4] += a[:, l] ⊗ b[l, :]`` rounds as the kernel's ``partial_sums[k] += a·b`` does,
and β·c + α·d is computed in float64, where β·c (24 × 8 significant bits) is exact and the
sum is rounded once more to float32 — as the fused multiply-add unless the two terms are more
than 2²⁹ apart and the exact sum falls on a midpoint, which a sum of products of the
iteration's magnitudes does not reach. 28 ms for the 512×512 product above.

It is used only where it reproduces torch on this machine, checked once per process on probe
products, bit for bit (:func:`reproduces_torch`); elsewhere (another CPU, another torch, a GPU,
other dtypes or layouts, products too small to gain) ``torch.addmm`` runs.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["addmm", "reproduces_torch", "MIN_WORK", "PROFILED"]

#: multiply-adds (m·n·k) from which the elementwise form is faster than torch's kernel: it takes
#: ⌊k/4⌋ operations of some 30 µs each on small blocks. Measured on a 2-core EPYC: 64×64×64
#: 0.36 ms in torch's kernel against 0.56 ms; 64×130×40 0.42 against 1.0 ms; 64×64×156 0.8
#: against 0.57 ms; 128×128×128 2.4 against 1.1 ms; 512×512×512 235 against 28 ms.
MIN_WORK = 1 << 19
#: elements of a block's four partial sums (float32): 1 MiB, a core's L2 cache.
BLOCK = 1 << 18
#: the profiler's name of :func:`addmm`'s elementwise form, followed by ``[MxKxN]``.
PROFILED = "optimlab::addmm"


def addmm(c: Tensor, a: Tensor, b: Tensor, *, beta: float = 1.0, alpha: float = 1.0) -> Tensor:
    """``torch.addmm(c, a, b, beta=beta, alpha=alpha)``, the same bits."""
    if not _applies(c, a, b) or not reproduces_torch():
        return torch.addmm(c, a, b, beta=beta, alpha=alpha)
    return _emulated(c, a, b, beta, alpha)


def _applies(c: Tensor, a: Tensor, b: Tensor) -> bool:
    """The operands take torch's scalar kernel (bfloat16 on a CPU, row-major, ``c`` of the
    output's shape) and enough work to gain."""
    if not (a.dim() == b.dim() == c.dim() == 2 and a.device.type == "cpu"
            and a.dtype == b.dtype == c.dtype == torch.bfloat16
            and not (a.requires_grad or b.requires_grad or c.requires_grad)):
        return False
    (m, k), n = a.shape, b.shape[1]
    return (b.shape[0] == k and c.shape == (m, n) and m * n * k >= MIN_WORK
            and a.is_contiguous() and b.is_contiguous() and c.is_contiguous())


def _emulated(c: Tensor, a: Tensor, b: Tensor, beta: float, alpha: float) -> Tensor:
    (m, k), n = a.shape, b.shape[1]
    # named with its shape, so that torch.profiler can tell (and benchmarks/step.py counts) it
    # as a matrix product of 2·m·k·n FLOPs
    with torch.profiler.record_function(f"{PROFILED}[{m}x{k}x{n}]"):
        whole = k - k % 4
        # the scalars as the kernel has them: float32 (``Scalar::to<float>``)
        beta32 = torch.tensor(beta, dtype=torch.float32)
        alpha32 = torch.tensor(alpha, dtype=torch.float32)
        reads_c = beta32.item() != 0  # the kernel's branch: with β = 0, c is not read
        a32, b32 = a.float(), b.float()
        columns = a32[:, :whole].view(m, whole // 4, 4).permute(1, 2, 0).unsqueeze(3)
        rows = b32[:whole].view(whole // 4, 4, 1, n)  # columns (k/4, 4, m, 1), rows (k/4, 4, 1, n)
        out = torch.empty(m, n, dtype=torch.bfloat16)
        block = max(1, BLOCK // (4 * n))
        for r0 in range(0, m, block):
            r1 = min(m, r0 + block)
            sums = torch.zeros(4, r1 - r0, n, dtype=torch.float32)
            for q in range(whole // 4):
                sums.addcmul_(columns[q, :, r0:r1], rows[q])
            for l in range(whole, k):
                sums[0].addcmul_(a32[r0:r1, l, None], b32[None, l, :])
            scaled = (alpha32 * (((sums[0] + sums[1]) + sums[2]) + sums[3])).double()
            out[r0:r1] = (beta32.double() * c[r0:r1].double() + scaled if reads_c
                          else scaled).float()
        return out


@functools.cache
def reproduces_torch() -> bool:
    """Whether :func:`addmm`'s elementwise form gives torch's bits on this machine: a CPU
    without oneDNN's bfloat16 kernels, and probe products (k not a multiple of 4, β ≠ 0 and
    β = 0) equal bit for bit. Checked once per process."""
    mkldnn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if mkldnn is None or mkldnn():
        return False
    generator = torch.Generator().manual_seed(0)

    def probe(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).bfloat16()

    for (m, k, n), beta, alpha in (((256, 66, 256), -4.775, 2.0315), ((64, 66, 64), 0.0, 1.5)):
        c, a, b = probe(m, n), probe(m, k), probe(k, n)
        if not torch.equal(_emulated(c, a, b, beta, alpha),
                           torch.addmm(c, a, b, beta=beta, alpha=alpha)):
            return False
    return True
