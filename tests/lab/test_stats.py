"""The comparison statistics: Welch's t-test against scipy.stats, Holm's adjustment by hand and
by its step-down definition, the percentile bootstrap on cases with a known answer and against
scipy.stats.bootstrap, and the tie with the best row."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from optimlab.lab.stats import bootstrap_ci, holm, tied_with_best, welch_t_test


@pytest.mark.parametrize("seed", range(6))
def test_welch_t_test_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, size=int(rng.integers(2, 12)))
    b = rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 3.0), size=int(rng.integers(2, 12)))
    t, df, p = welch_t_test(a, b)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(reference.statistic, rel=1e-12)
    assert df == pytest.approx(reference.df, rel=1e-12)
    assert p == pytest.approx(reference.pvalue, rel=1e-10, abs=1e-300)


def test_welch_t_test_edge_cases():
    assert welch_t_test([1.0, 1.0], [1.0, 1.0])[2] == 1.0  # no spread, equal: nothing differs
    assert welch_t_test([1.0, 1.0], [2.0, 2.0])[2] == 0.0  # no spread, different constants
    one_constant = welch_t_test([1.0, 1.0, 1.0], [1.5, 2.0, 2.5])
    with warnings.catch_warnings():  # scipy warns that [1, 1, 1] has no spread
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = scipy_stats.ttest_ind([1.0, 1.0, 1.0], [1.5, 2.0, 2.5], equal_var=False)
    assert one_constant[2] == pytest.approx(reference.pvalue, rel=1e-10)
    with pytest.raises(ValueError, match="a has 1 value"):
        welch_t_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        welch_t_test([1.0, math.inf], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        welch_t_test([1.0, math.nan], [1.0, 2.0])


def test_holm_by_hand_and_by_its_step_down_definition():
    # p sorted: 0.01 (×4 = 0.04), 0.02 (×3 = 0.06), 0.03 (×2 = 0.06), 0.5 (×1 = 0.5)
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([]) == [] and holm([0.3]) == [0.3] and holm([0.6, 0.7]) == [1.0, 1.0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.uniform(0, 0.1, size=int(rng.integers(1, 9))).tolist()
        alpha = 0.05
        # step-down: walk the sorted p-values, reject while p_(i) <= alpha / (m - i)
        rejected, order = set(), sorted(range(len(p)), key=lambda i: p[i])
        for rank, i in enumerate(order):
            if p[i] > alpha / (len(p) - rank):
                break
            rejected.add(i)
        assert {i for i, q in enumerate(holm(p)) if q <= alpha} == rejected
    with pytest.raises(ValueError, match="p_values"):
        holm([0.5, 1.5])


def test_bootstrap_of_a_constant_sample_is_that_constant():
    assert bootstrap_ci([0.25] * 5) == (0.25, 0.25)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)


def test_bootstrap_of_a_two_valued_sample_gives_the_binomial_quantiles():
    """Ten 0s and ten 1s: a resample's mean is K/20 with K ~ Binomial(20, 1/2) exactly, whose
    2.5 % and 97.5 % quantiles are 6 and 14 (P(K ≤ 5) = 0.021 < 0.025 < P(K ≤ 6) = 0.058, far
    more than the Monte Carlo error of 10,000 resamples apart). Known answer: [0.3, 0.7]."""
    assert scipy_stats.binom.ppf([0.025, 0.975], 20, 0.5).tolist() == [6.0, 14.0]
    assert bootstrap_ci([0.0] * 10 + [1.0] * 10) == (0.3, 0.7)


def test_bootstrap_of_a_large_sample_is_the_normal_interval():
    """n = 400: the bootstrap distribution of the mean is close to N(x̄, σ̂²/n) with σ̂ the
    standard deviation with divisor n, so the interval is x̄ ± 1.96 σ̂/√n up to the normal
    approximation and the Monte Carlo error (each well under 5 % of σ̂/√n here)."""
    x = np.random.default_rng(1).normal(10.0, 2.0, size=400)
    low, high = bootstrap_ci(x)
    se = x.std(ddof=0) / math.sqrt(len(x))
    z = scipy_stats.norm.ppf(0.975)
    assert low == pytest.approx(x.mean() - z * se, abs=0.05 * se)
    assert high == pytest.approx(x.mean() + z * se, abs=0.05 * se)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    """scipy.stats.bootstrap(method="percentile") draws its own resamples: the two intervals
    agree to the Monte Carlo error of 10,000 resamples (< 5 % of the standard error)."""
    x = np.random.default_rng(2).gamma(2.0, 1.0, size=7)
    reference = scipy_stats.bootstrap((x,), np.mean, method="percentile", n_resamples=100_000,
                                      rng=np.random.default_rng(3)).confidence_interval
    se = x.std(ddof=1) / math.sqrt(len(x))
    low, high = bootstrap_ci(x)
    assert low == pytest.approx(reference.low, abs=0.05 * se)
    assert high == pytest.approx(reference.high, abs=0.05 * se)


def test_bootstrap_is_reproducible_and_checks_its_input():
    x = [0.31, 0.29, 0.35, 0.30, 0.33]
    low, high = bootstrap_ci(x)
    assert (low, high) == bootstrap_ci(x) and low < float(np.mean(x)) < high
    assert bootstrap_ci(x, seed=1) != (low, high)
    assert bootstrap_ci(x, confidence=0.5)[1] - bootstrap_ci(x, confidence=0.5)[0] < high - low
    assert bootstrap_ci([1.0, 2.0, math.inf])[1] == math.inf  # a diverged seed
    with pytest.raises(ValueError, match="values is empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="confidence=1.5"):
        bootstrap_ci(x, confidence=1.5)
    with pytest.raises(ValueError, match="resamples=0"):
        bootstrap_ci(x, resamples=0)


def test_tied_with_best():
    rng = np.random.default_rng(4)
    best = rng.normal(1.0, 0.01, 5)
    close = best[::-1] + 0.002  # the same spread, a slightly higher mean: indistinguishable
    far = rng.normal(2.0, 0.01, 5)  # clearly worse
    tied, p = tied_with_best([far, best, close])
    assert tied == [False, True, True] and p[1] == 1.0
    # the p-values are Welch's, Holm-adjusted over the two comparisons
    raw = [scipy_stats.ttest_ind(row, best, equal_var=False).pvalue for row in (far, close)]
    assert [p[0], p[2]] == pytest.approx(holm(raw), rel=1e-10)
    diverged = [1.0, math.inf, 1.1, 1.0, 1.05]
    assert tied_with_best([best, diverged])[0] == [True, False]
    assert tied_with_best([[1.0], [2.0]]) == ([True, None], [1.0, None])  # one seed: no test
    assert tied_with_best([]) == ([], [])
    with pytest.raises(ValueError, match="alpha=0"):
        tied_with_best([best], alpha=0)


def test_the_correction_matters():
    """Nine rows each just significant on its own (p ≈ 0.03) are all tied after Holm."""
    best = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    shifted = best + 0.13 + np.array([0.01, -0.01, 0.02, 0.0, -0.02])
    single = scipy_stats.ttest_ind(shifted, best, equal_var=False).pvalue
    assert single < 0.05 and tied_with_best([best, shifted])[0] == [True, False]  # alone
    tied, p = tied_with_best([best] + [shifted] * 9)
    assert all(tied) and p[1] == pytest.approx(min(1.0, 9 * single))
