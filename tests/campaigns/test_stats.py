"""A/B statistics: intervals and tails against published values, the always-valid comparison by simulation.

The simulations are the point of the module: the report is read every hour, so `compare` is checked the
way it is used, after every 100 calls, on variants that are truly identical (at most 5% of campaigns may
ever show a winner) and on variants 5 points apart (most must show the right one). A naive z-test run on
the same data shows the harness can see the failure it guards against. Generators are seeded, so every
figure is the same on every run; pytest -s prints them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from campaigns.stats import (
    MAX_MORE_CALLS,
    MIN_TRIALS,
    TAU,
    Comparison,
    Interval,
    Verdict,
    chi2_sf,
    compare,
    normal_quantile,
    sample_ratio_mismatch,
    wilson,
)

Z_975 = 1.959963984540054
CALLS_PER_LOOK = 100
LOOKS = 100  # up to 10,000 calls per simulation


def answer_rate(
    control_successes: int,
    control_trials: int,
    challenger_successes: int,
    challenger_trials: int,
    **options: float | str | None,
) -> Comparison:
    """compare() on the answer rate of A (control) against B."""
    return compare(
        "answer rate",
        "answers",
        "A",
        control_successes,
        control_trials,
        "B",
        challenger_successes,
        challenger_trials,
        **options,
    )


# --- Wilson intervals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Newcombe, "Two-sided confidence intervals for the single proportion", Stat Med 1998, Table II,
        # method 3 (score interval without continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_matches_published_intervals(successes, trials, low, high):
    interval = wilson(successes, trials)
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


def test_wilson_at_none_and_all_successes_has_closed_form_ends():
    # With x = 0 the score interval is [0, z^2 / (n + z^2)]; with x = n it is [n / (n + z^2), 1].
    z2 = Z_975**2
    assert wilson(0, 10) == Interval(0.0, pytest.approx(z2 / (10 + z2), rel=1e-12))
    assert wilson(10, 10) == Interval(pytest.approx(10 / (10 + z2), rel=1e-12), 1.0)
    assert wilson(0, 10).high == pytest.approx(0.27753279986288915, rel=1e-12)


def test_wilson_is_none_without_trials():
    assert wilson(0, 0) is None


def test_wilson_lies_in_the_unit_interval_around_the_rate():
    for trials in range(1, 80):
        for successes in range(trials + 1):
            interval = wilson(successes, trials)
            narrow = wilson(successes, trials, confidence=0.9)
            assert 0.0 <= interval.low <= successes / trials <= interval.high <= 1.0
            assert interval.low <= narrow.low and narrow.high <= interval.high


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson(11, 10)
    with pytest.raises(ValueError):
        wilson(5, 10, confidence=1.0)


# --- normal quantile and chi-square tail ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "x"),
    [
        (0.975, Z_975),
        (0.025, -Z_975),
        (0.5, 0.0),
        (0.8413447460685429, 1.0),  # Phi(1)
        (0.999, 3.090232306167813),
        (1e-10, -6.361340902404056),
    ],
)
def test_normal_quantile_known_values(p, x):
    assert normal_quantile(p) == pytest.approx(x, abs=1e-9)


def test_normal_quantile_inverts_the_normal_cdf():
    for exponent in range(1, 15):
        for p in (10.0**-exponent, 0.5 - 10.0**-exponent / 3, 1 - 10.0**-exponent):
            x = normal_quantile(p)
            lower_tail = 0.5 * math.erfc(-x / math.sqrt(2))
            assert lower_tail == pytest.approx(p, rel=1e-9)


def test_normal_quantile_rejects_probabilities_outside_the_open_unit_interval():
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            normal_quantile(p)


@pytest.mark.parametrize(
    ("x", "df"),
    [(3.841458820694124, 1), (5.991464547107979, 2), (11.070497693516351, 5), (18.307038053275146, 10)],
)
def test_chi2_sf_at_the_5_percent_critical_values(x, df):
    assert chi2_sf(x, df) == pytest.approx(0.05, rel=1e-10)


def test_chi2_sf_matches_closed_forms():
    # df = 1: erfc(sqrt(x/2)); df = 3 adds sqrt(2x/pi) e^(-x/2); even df: e^(-x/2) sum_(k < df/2) (x/2)^k / k!
    for x in (0.01, 0.3, 1.0, 2.5, 4.0, 9.0, 25.0, 80.0, 300.0):
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-11)
        df3 = math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
        assert chi2_sf(x, 3) == pytest.approx(df3, rel=1e-11)
        for df in (2, 4, 8, 20, 60):
            even = math.exp(-x / 2) * sum((x / 2) ** k / math.factorial(k) for k in range(df // 2))
            assert chi2_sf(x, df) == pytest.approx(even, rel=1e-11)


def test_chi2_sf_is_one_at_zero_and_decreasing():
    assert chi2_sf(0.0, 3) == 1.0
    values = [chi2_sf(x / 4, 4) for x in range(200)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


# --- sample ratio mismatch -----------------------------------------------------------------------------


def test_sample_ratio_mismatch_an_even_split_fits():
    assert sample_ratio_mismatch([5000, 5000], [1, 1]) == pytest.approx(1.0)


def test_sample_ratio_mismatch_flags_300_calls_too_many():
    # chi^2 = 2 * 150^2 / 5150 = 8.74 on 1 df
    p = sample_ratio_mismatch([5000, 5300], [1, 1])
    assert p < 0.01
    assert p == pytest.approx(math.erfc(math.sqrt(2 * 150**2 / 5150 / 2)), rel=1e-9)


def test_sample_ratio_mismatch_respects_weights():
    assert sample_ratio_mismatch([7500, 2500], [3, 1]) == pytest.approx(1.0)
    assert sample_ratio_mismatch([3000, 1000, 2000], [3, 1, 2]) == pytest.approx(1.0)
    assert sample_ratio_mismatch([5000, 5000], [3, 1]) < 1e-12
    statistic = 100**2 / 7500 + 100**2 / 2500
    assert sample_ratio_mismatch([7400, 2600], [3, 1]) == pytest.approx(chi2_sf(statistic, 1))


def test_sample_ratio_mismatch_needs_two_variants_and_calls():
    assert sample_ratio_mismatch([100], [1]) is None
    assert sample_ratio_mismatch([0, 0], [1, 1]) is None
    assert sample_ratio_mismatch([10, 0], [1, 0]) is None  # a variant switched off takes no part
    assert sample_ratio_mismatch([10, 1], [1, 0]) == 0.0  # ...but any call to it is a mismatch
    with pytest.raises(ValueError):
        sample_ratio_mismatch([1, 2], [1])


# --- compare: verdicts and sentences -------------------------------------------------------------------


def test_compare_challenger_wins():
    result = answer_rate(1200, 3000, 1450, 3000)
    assert result.verdict is Verdict.WINS
    assert result.control_rate == 0.4 and result.challenger_rate == pytest.approx(1450 / 3000)
    assert result.difference == pytest.approx(1450 / 3000 - 0.4)
    assert result.interval.low > 0 and result.p_value < 0.05 and result.more_calls is None
    assert result.sentence == "B answers 8.3 points more than A (95% CI 4.4\u201312.2): B wins."


def test_compare_challenger_loses():
    result = answer_rate(1450, 3000, 1200, 3000)
    assert result.verdict is Verdict.LOSES
    assert result.interval.high < 0 and result.more_calls is None
    assert result.sentence == "B answers 8.3 points less than A (95% CI \u221212.2 to \u22124.4): A wins."


def test_compare_no_difference_worth_acting_on():
    result = answer_rate(20000, 50000, 20100, 50000)
    assert result.verdict is Verdict.NO_DIFFERENCE
    assert -0.02 < result.interval.low < 0 < result.interval.high < 0.02
    assert result.sentence == (
        "No difference worth acting on: B's answer rate is within 2.0 points of A's "
        "(95% CI \u22120.9 to 1.3)."
    )
    # The same data with a smaller difference that matters cannot rule it out.
    assert answer_rate(20000, 50000, 20100, 50000, min_effect=0.01).verdict is Verdict.NOT_ENOUGH_DATA


def test_compare_not_enough_data_says_who_leads_and_how_many_more_calls():
    result = answer_rate(400, 1000, 450, 1000)
    assert result.verdict is Verdict.NOT_ENOUGH_DATA
    assert result.interval.low < 0 < result.interval.high
    assert result.more_calls == 800
    assert result.sentence == (
        "B is ahead by 5.0 points so far; not enough data yet: about 800 more calls per variant."
    )
    behind = answer_rate(450, 1000, 400, 1000, unit="attempts")
    assert behind.sentence == (
        "A is ahead by 5.0 points so far; not enough data yet: about 800 more attempts per variant."
    )
    level = answer_rate(400, 1000, 400, 1000)
    assert level.sentence.startswith("A and B are level so far; not enough data yet: about ")


def test_compare_gives_no_verdict_before_min_trials():
    # A 30-point lead on 99 calls each would be "significant" to a z-test; the normal approximation is not
    # trusted that early, so there is no interval, no p-value and no verdict yet.
    result = answer_rate(30, MIN_TRIALS - 1, 60, MIN_TRIALS - 1)
    assert result.verdict is Verdict.NOT_ENOUGH_DATA
    assert result.interval is None and result.p_value is None
    assert result.difference == pytest.approx(30 / 99)
    assert result.more_calls >= 1
    assert answer_rate(30, MIN_TRIALS, 60, MIN_TRIALS).verdict is Verdict.WINS


def test_compare_without_calls():
    result = answer_rate(0, 0, 0, 0)
    assert (result.control_rate, result.challenger_rate, result.difference) == (None, None, None)
    assert result.verdict is Verdict.NOT_ENOUGH_DATA
    assert result.more_calls >= MIN_TRIALS
    assert result.sentence == f"Not enough data yet: about {result.more_calls:,} more calls per variant."
    started = answer_rate(3, 10, 0, 0)
    assert started.control_rate == 0.3 and started.difference is None
    assert started.more_calls >= MIN_TRIALS


def test_compare_caps_the_projection():
    result = answer_rate(4000, 10000, 4000, 10000, min_effect=0.0)
    assert result.more_calls == MAX_MORE_CALLS
    assert result.sentence == (
        "A and B are level so far; not enough data yet: more than 1,000,000 more calls per variant."
    )


def test_compare_rejects_impossible_counts():
    with pytest.raises(ValueError):
        answer_rate(11, 10, 5, 10)
    with pytest.raises(ValueError):
        answer_rate(1, 10, 5, 10, comparisons=0)


# --- compare: the mSPRT itself -------------------------------------------------------------------------


def plug_in_variance(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """V of the difference, from rates smoothed to (x + 1)/(n + 2)."""
    smoothed_a = (successes_a + 1) / (trials_a + 2)
    smoothed_b = (successes_b + 1) / (trials_b + 2)
    return smoothed_a * (1 - smoothed_a) / trials_a + smoothed_b * (1 - smoothed_b) / trials_b


def test_interval_excludes_zero_exactly_when_likelihood_ratio_reaches_one_over_alpha():
    # Lambda and the interval as Johari et al. state them, computed here independently of compare().
    tau2 = TAU**2
    decided = undecided = 0
    for trials_a, trials_b in ((100, 100), (250, 400), (1000, 1000), (4000, 2500)):
        for rate_a in (0.05, 0.3, 0.5, 0.9):
            for lift in range(-30, 31):
                successes_a = round(rate_a * trials_a)
                successes_b = min(trials_b, max(0, round((rate_a + lift / 200) * trials_b)))
                v = plug_in_variance(successes_a, trials_a, successes_b, trials_b)
                theta = successes_b / trials_b - successes_a / trials_a
                lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * theta**2 / (2 * v * (v + tau2)))
                for alpha, comparisons in ((0.05, 1), (0.01, 1), (0.05, 3)):
                    result = answer_rate(
                        successes_a, trials_a, successes_b, trials_b, alpha=alpha, comparisons=comparisons
                    )
                    excludes_zero = result.interval.low > 0 or result.interval.high < 0
                    assert excludes_zero == (lam >= comparisons / alpha)
                    assert result.p_value == pytest.approx(min(1.0, comparisons / lam), rel=1e-9)
                    assert (result.p_value <= alpha) == excludes_zero
                    a = alpha / comparisons
                    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / a) + math.log((v + tau2) / v)))
                    assert result.interval.low == pytest.approx(theta - half, abs=1e-12)
                    assert result.interval.high == pytest.approx(theta + half, abs=1e-12)
                    decided += excludes_zero
                    undecided += not excludes_zero
    assert decided > 100 and undecided > 100  # the grid straddles the boundary


def test_bonferroni_widens_the_interval_and_says_so():
    single = answer_rate(400, 1000, 470, 1000)
    triple = answer_rate(400, 1000, 470, 1000, comparisons=3)
    assert triple.interval.low < single.interval.low and single.interval.high < triple.interval.high
    assert triple.p_value == pytest.approx(min(1.0, 3 * single.p_value))
    assert single.verdict is Verdict.WINS and triple.verdict is Verdict.NOT_ENOUGH_DATA
    assert "(98.3% CI " in answer_rate(1200, 3000, 1450, 3000, comparisons=3).sentence
    assert "(99% CI " in answer_rate(1200, 3000, 1450, 3000, alpha=0.01).sentence


def test_previous_p_value_is_a_running_minimum():
    early = answer_rate(200, 500, 250, 500)
    later = answer_rate(420, 1000, 450, 1000, previous_p_value=early.p_value)
    alone = answer_rate(420, 1000, 450, 1000)
    assert early.p_value < alone.p_value
    assert later.p_value == early.p_value


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        ((400, 1000, 450, 1000), Verdict.WINS),
        ((400, 1000, 430, 1000), Verdict.WINS),
        ((300, 500, 285, 500), Verdict.LOSES),
        ((100, 1000, 130, 1000), Verdict.WINS),
        ((800, 2000, 810, 2000), Verdict.NO_DIFFERENCE),
        ((40, 60, 30, 60), Verdict.LOSES),  # below MIN_TRIALS: the projection reaches it first
    ],
)
def test_more_calls_projection_reaches_a_verdict_if_the_rates_hold(counts, verdict):
    successes_a, trials_a, successes_b, trials_b = counts
    now = answer_rate(*counts)
    assert now.verdict is Verdict.NOT_ENOUGH_DATA

    def after(extra: int) -> Comparison:
        return answer_rate(
            round(successes_a * (trials_a + extra) / trials_a),
            trials_a + extra,
            round(successes_b * (trials_b + extra) / trials_b),
            trials_b + extra,
        )

    assert after(now.more_calls).verdict is verdict
    # and not many fewer would do: the projection is a fair estimate, not a generous one
    assert after(now.more_calls * 2 // 3).verdict is Verdict.NOT_ENOUGH_DATA


def test_more_calls_is_a_readable_number():
    for counts in ((400, 1000, 430, 1000), (800, 2000, 810, 2000), (120, 300, 135, 300), (10, 50, 12, 40)):
        more = answer_rate(*counts).more_calls
        assert more >= 1
        digits = str(more)
        assert digits[2:] == "0" * len(digits[2:]), more


# --- the peeking simulation ----------------------------------------------------------------------------


Looks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def simulate(rng: np.random.Generator, rate_a: float, rate_b: float, sims: int) -> Looks:
    """Cumulative successes A, trials A, successes B, trials B at every look: four (sims, LOOKS) arrays.

    Each call goes to A or B by a fair coin and succeeds with its variant's rate. Drawing the counts of each
    block of 100 calls (binomial arm sizes, then binomial successes) gives the same totals at every look as
    drawing the calls one by one.
    """
    to_b = rng.binomial(CALLS_PER_LOOK, 0.5, size=(sims, LOOKS))
    to_a = CALLS_PER_LOOK - to_b
    successes_a = rng.binomial(to_a, rate_a).cumsum(axis=1)
    successes_b = rng.binomial(to_b, rate_b).cumsum(axis=1)
    return successes_a, to_a.cumsum(axis=1), successes_b, to_b.cumsum(axis=1)


def first_decisions(looks: Looks) -> list[tuple[Verdict, int] | None]:
    """Per simulation, the first WINS or LOSES compare() gives and the calls made by then, else None."""
    decisions: list[tuple[Verdict, int] | None] = []
    for campaign in zip(*(counts.tolist() for counts in looks), strict=True):
        decisions.append(None)
        for successes_a, trials_a, successes_b, trials_b in zip(*campaign, strict=True):
            verdict = answer_rate(successes_a, trials_a, successes_b, trials_b).verdict
            if verdict is Verdict.WINS or verdict is Verdict.LOSES:
                decisions[-1] = (verdict, trials_a + trials_b)
                break
    return decisions


def naive_z_test_rejections(looks: Looks) -> np.ndarray:
    """Whether a fixed-horizon two-proportion z-test at 95% rejects at any look (from MIN_TRIALS)."""
    successes_a, trials_a, successes_b, trials_b = looks
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    z = np.abs(successes_b / trials_b - successes_a / trials_a) / np.where(se > 0, se, np.inf)
    looked = np.minimum(trials_a, trials_b) >= MIN_TRIALS
    return np.any(looked & (z > Z_975), axis=1)


@pytest.mark.parametrize(("rate", "seed"), [(0.1, 101), (0.4, 104), (0.7, 107)])
def test_peeking_every_100_calls_keeps_false_positives_under_5_percent(rate, seed):
    sims = 1000
    looks = simulate(np.random.default_rng(seed), rate, rate, sims)
    msprt = sum(decision is not None for decision in first_decisions(looks)) / sims
    naive = float(naive_z_test_rejections(looks).mean())
    print(f"\nidentical variants at {rate:.0%}: false positives {msprt:.3f} (naive z-test {naive:.3f})")
    assert msprt <= 0.05
    assert naive > 0.15  # the harness has teeth: peeking at a fixed-horizon test fails it


def test_a_real_5_point_lift_is_found():
    sims = 1000
    decisions = first_decisions(simulate(np.random.default_rng(45), 0.40, 0.45, sims))
    wins = [calls for verdict, calls in filter(None, decisions) if verdict is Verdict.WINS]
    losses = [calls for verdict, calls in filter(None, decisions) if verdict is Verdict.LOSES]
    print(
        f"\n40% vs 45%: B wins in {len(wins) / sims:.3f} of campaigns by {LOOKS * CALLS_PER_LOOK:,} calls, "
        f"median {int(np.median(wins)):,} calls; A wins in {len(losses)}"
    )
    assert losses == []
    assert len(wins) / sims >= 0.9
