"""A/B test statistics for call campaigns: rate intervals, a sample-ratio check, always-valid comparisons.

The campaign report is looked at every hour while calls come in. A fixed-horizon z-test checked that often
declares far more than 5% of identical variants different (each look is another chance of a fluke), so
`compare` uses the mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis & Walsh,
"Always valid inference" (2017/2022), with Robbins' normal mixture on the difference of two proportions
under the normal approximation. Its p-value and confidence interval stay valid however often, and whenever,
somebody looks: the chance that *any* look ever shows a difference between identical variants is at most
alpha.

With the observed difference theta = p_B - p_A, its plug-in variance V = p_A(1-p_A)/n_A + p_B(1-p_B)/n_B
(the rates in V only smoothed to (x+1)/(n+2), so V > 0 at 0% or 100%) and a N(0, TAU^2) mixing prior on the
true difference, the mixture likelihood ratio against "no difference" is

    Lambda = sqrt(V / (V + TAU^2)) * exp(TAU^2 theta^2 / (2 V (V + TAU^2)))

the always-valid p-value is min(1, 1 / Lambda), and the always-valid (1 - alpha) interval is

    theta +/- sqrt(V (V + TAU^2) / TAU^2 * (2 ln(1/alpha) + ln((V + TAU^2) / V)))

which excludes 0 exactly when Lambda >= 1/alpha. Several challengers against one control share alpha by
Bonferroni (alpha / comparisons).

Pure Python on `math` so reports, views and the bench can use it without Django or numpy; the sentences are
in the reader's language where Django is set up (herald.translation). The chi-square
tail is written by hand because scipy is too heavy a dependency for one function; the normal quantile comes
from the standard library (`statistics.NormalDist`, Wichura's AS241, accurate to about 1e-16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from herald.translation import gettext

# Standard deviation of the mixing prior on the true difference in rates. Voices and scripts move answer
# and confirmation rates by a few points, so 0.05 puts the prior's weight where real effects are: the test
# is most sensitive to differences of that size at the few thousand calls per variant a campaign has.
# Simulated with a look every 100 calls, a 5-point lift at a 40% base rate is found after a median of
# 1,550 calls per variant and by 5,000 in 99% of campaigns; TAU = 0.03 or 0.1 finds it later, and a smaller
# TAU gains little for 2-point effects while losing more on large ones.
TAU = 0.05
# No verdict before each variant has this many calls: before that the normal approximation to a rate of
# 10% or 90% is poor, and the plug-in variance is too noisy to trust.
MIN_TRIALS = 100
# The projection of further calls stops here; beyond it the sentence says "more than".
MAX_MORE_CALLS = 1_000_000

MINUS = "\u2212"
EN_DASH = "\u2013"


@dataclass(frozen=True)
class Interval:
    """A closed interval [low, high] of rates or of differences in rates (fractions, not percent)."""

    low: float
    high: float


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval | None:
    """Wilson score interval for a proportion (95% by default); None when trials == 0."""
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, trials], got {successes} of {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if trials == 0:
        return None
    z = normal_quantile(1 - (1 - confidence) / 2)
    z2 = z * z
    rate = successes / trials
    centre = (rate + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials * trials))
    # At 0 or all successes the exact end is 0 or 1; rounding would otherwise leave 1e-17 or 0.9999999.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(low, high)


def normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF: the x with P(Z <= x) = p, for 0 < p < 1."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    return NormalDist().inv_cdf(p)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with df degrees of freedom (the regularised upper incomplete gamma)."""
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if x <= 0:
        return 1.0
    return _upper_gamma_regularised(df / 2, x / 2)


def _upper_gamma_regularised(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a): a series below x = a + 1, Lentz's continued fraction above."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        # P(a, x) = x^a e^-x / Gamma(a + 1) * sum_k x^k / ((a + 1) ... (a + k)); converges fast here.
        term = total = 1 / a
        denominator = a
        while abs(term) > abs(total) * 1e-16:
            denominator += 1
            term *= x / denominator
            total += term
        return max(0.0, 1 - total * math.exp(log_prefix))
    # Q(a, x) = x^a e^-x / Gamma(a) * 1 / (x + 1 - a - 1(1 - a) / (x + 3 - a - 2(2 - a) / (x + 5 - a - ...)))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    fraction = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        fraction *= step
        if abs(step - 1) < 1e-16:
            break
    return math.exp(log_prefix) * fraction


def sample_ratio_mismatch(counts: list[int], weights: list[int]) -> float | None:
    """p-value of a chi-square test of calls per variant against weights; None if < 2 variants or no calls."""
    if len(counts) != len(weights):
        raise ValueError(f"{len(counts)} counts but {len(weights)} weights")
    if any(c < 0 for c in counts) or any(w < 0 for w in weights):
        raise ValueError("counts and weights must not be negative")
    # A variant with weight 0 should get no calls at all: any call there is a certain mismatch, and a
    # variant with neither weight nor calls takes no part in the test.
    if any(c > 0 for c, w in zip(counts, weights, strict=True) if w == 0):
        return 0.0
    pairs = [(c, w) for c, w in zip(counts, weights, strict=True) if w > 0]
    total = sum(c for c, _ in pairs)
    if len(pairs) < 2 or total == 0:
        return None
    weight_total = sum(w for _, w in pairs)
    statistic = 0.0
    for count, weight in pairs:
        expected = total * weight / weight_total
        statistic += (count - expected) ** 2 / expected
    return chi2_sf(statistic, len(pairs) - 1)


class Verdict(StrEnum):
    """What a comparison of a challenger with the control concludes."""

    WINS = "wins"  # challenger better than control
    LOSES = "loses"  # challenger worse than control (control wins)
    NO_DIFFERENCE = "no_difference"  # interval inside +/- min_effect: a difference that matters is ruled out
    NOT_ENOUGH_DATA = "not_enough_data"


@dataclass(frozen=True)
class Comparison:
    """A challenger against the control on one metric, with the sentence a marketer reads."""

    metric: str  # e.g. "answer rate"
    control: str  # label, e.g. "A"
    challenger: str  # label, e.g. "B"
    control_rate: float | None
    challenger_rate: float | None
    difference: float | None  # challenger_rate - control_rate, a fraction (0.041 = 4.1 points)
    interval: Interval | None  # always-valid (1 - alpha / comparisons) interval for the difference
    p_value: float | None  # always-valid, Bonferroni-adjusted: <= alpha exactly when interval excludes 0
    verdict: Verdict
    more_calls: int | None  # with NOT_ENOUGH_DATA: estimated further trials per variant until a verdict
    sentence: str


def compare(
    metric: str,
    verb: str,
    control: str,
    control_successes: int,
    control_trials: int,
    challenger: str,
    challenger_successes: int,
    challenger_trials: int,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.02,
    comparisons: int = 1,
    unit: str = "calls",
    previous_p_value: float | None = None,
) -> Comparison:
    """Compare the challenger's rate with the control's by an mSPRT that stays valid at every look.

    `verb` is the third-person form of what a success is ("answers", "confirms"); `unit` names a trial.
    With `comparisons` challengers tested against one control, each comparison uses alpha / comparisons:
    the interval, the p-value (multiplied by `comparisons`) and the confidence level printed in the
    sentence (98.3% for three challengers at alpha 0.05) are all that Bonferroni-adjusted one, so the
    interval a marketer reads is the one the verdict was made from. Pass the p-value of the previous look
    as `previous_p_value` to get the running minimum, which never rises as calls arrive; the verdict reads
    the current interval only. No interval, p-value or verdict before each variant has MIN_TRIALS trials.
    """
    for successes, trials in ((control_successes, control_trials), (challenger_successes, challenger_trials)):
        if not 0 <= successes <= trials:
            raise ValueError(f"successes must lie in [0, trials], got {successes} of {trials}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1, got {comparisons}")
    if min_effect < 0:
        raise ValueError(f"min_effect must not be negative, got {min_effect}")

    level_alpha = alpha / comparisons
    control_rate = control_successes / control_trials if control_trials else None
    challenger_rate = challenger_successes / challenger_trials if challenger_trials else None
    difference = None
    if control_rate is not None and challenger_rate is not None:
        difference = challenger_rate - control_rate
    control_spread = _spread(control_successes, control_trials)
    challenger_spread = _spread(challenger_successes, challenger_trials)

    interval = None
    p_value = None
    verdict = Verdict.NOT_ENOUGH_DATA
    if difference is not None and min(control_trials, challenger_trials) >= MIN_TRIALS:
        variance = control_spread / control_trials + challenger_spread / challenger_trials
        half = _half_width(variance, level_alpha)
        interval = Interval(difference - half, difference + half)
        p_value = min(1.0, comparisons * math.exp(-_log_likelihood_ratio(difference, variance)))
        if interval.low > 0:
            verdict = Verdict.WINS
        elif interval.high < 0:
            verdict = Verdict.LOSES
        elif -min_effect < interval.low and interval.high < min_effect:
            verdict = Verdict.NO_DIFFERENCE
    if previous_p_value is not None:
        p_value = previous_p_value if p_value is None else min(p_value, previous_p_value)

    more_calls = None
    if verdict is Verdict.NOT_ENOUGH_DATA:
        more_calls = _more_calls(
            control_trials,
            control_spread,
            challenger_trials,
            challenger_spread,
            lead=abs(difference) if difference is not None else 0.0,
            alpha=level_alpha,
            min_effect=min_effect,
        )

    level = _percent_label(1 - level_alpha)
    # A verdict always comes with an interval and a difference; testing them here too lets the types say so.
    said = {"control": control, "challenger": challenger, "metric": metric, "verb": verb, "unit": unit, "level": level}
    if verdict is Verdict.NOT_ENOUGH_DATA or interval is None or difference is None:
        if more_calls == MAX_MORE_CALLS:
            said["amount"] = gettext("more than %(n)s") % {"n": f"{MAX_MORE_CALLS:,}"}
        else:
            said["amount"] = gettext("about %(n)s") % {"n": f"{more_calls:,}"}
        if difference is None:
            sentence = gettext("Not enough data yet: %(amount)s more %(unit)s per variant.") % said
        else:
            said["rest"] = gettext("not enough data yet: %(amount)s more %(unit)s per variant.") % said
            if _points(difference) == _points(0.0):
                sentence = gettext("%(control)s and %(challenger)s are level so far; %(rest)s") % said
            else:
                said.update(leader=challenger if difference > 0 else control, points=_points(difference))
                sentence = gettext("%(leader)s is ahead by %(points)s points so far; %(rest)s") % said
    elif verdict is Verdict.NO_DIFFERENCE:
        said.update(points=_points(min_effect), interval=_interval_text(interval))
        sentence = gettext(
            "No difference worth acting on: %(challenger)s's %(metric)s is within %(points)s points of %(control)s's "
            "(%(level)s CI %(interval)s)."
        ) % said
    else:
        said.update(points=_points(difference), interval=_interval_text(interval))
        if verdict is Verdict.WINS:
            sentence = gettext(
                "%(challenger)s %(verb)s %(points)s points more than %(control)s (%(level)s CI %(interval)s): "
                "%(challenger)s wins."
            ) % said
        else:
            sentence = gettext(
                "%(challenger)s %(verb)s %(points)s points less than %(control)s (%(level)s CI %(interval)s): "
                "%(control)s wins."
            ) % said

    return Comparison(
        metric=metric,
        control=control,
        challenger=challenger,
        control_rate=control_rate,
        challenger_rate=challenger_rate,
        difference=difference,
        interval=interval,
        p_value=p_value,
        verdict=verdict,
        more_calls=more_calls,
        sentence=sentence,
    )


def _spread(successes: int, trials: int) -> float:
    """p(1 - p) of the rate smoothed to (x + 1)/(n + 2), so the variance stays positive at 0% or 100%."""
    smoothed = (successes + 1) / (trials + 2)
    return smoothed * (1 - smoothed)


def _log_likelihood_ratio(difference: float, variance: float) -> float:
    """ln Lambda of the normal-mixture SPRT for the observed difference against no difference."""
    tau2 = TAU * TAU
    return 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference * difference / (
        2 * variance * (variance + tau2)
    )


def _half_width(variance: float, alpha: float) -> float:
    """Half the width of the always-valid (1 - alpha) interval for a difference with that variance."""
    tau2 = TAU * TAU
    scale = variance * (variance + tau2) / tau2
    return math.sqrt(scale * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance)))


def _more_calls(
    control_trials: int,
    control_spread: float,
    challenger_trials: int,
    challenger_spread: float,
    *,
    lead: float,
    alpha: float,
    min_effect: float,
) -> int:
    """Further trials per variant until, if the observed rates hold, the interval gives a verdict.

    With the lead held, the interval lead +/- h excludes 0 once h < lead, and lies inside +/- min_effect once
    h < min_effect - lead; whichever comes first is the target. Each variant is brought to MIN_TRIALS too.
    """
    target = max(lead, min_effect - lead)
    floor = max(0, MIN_TRIALS - min(control_trials, challenger_trials))

    def enough(extra: int) -> bool:
        variance = control_spread / (control_trials + extra) + challenger_spread / (challenger_trials + extra)
        return _half_width(variance, alpha) < target

    if enough(floor):
        return _round_up(floor)
    if not enough(MAX_MORE_CALLS):
        return MAX_MORE_CALLS
    # Double from the calls made so far (the answer is often of that order) until enough, then bisect until
    # the bracket rounds to one readable figure: too_few is never enough, plenty always is.
    too_few, plenty = floor, max(1, floor, min(control_trials, challenger_trials))
    while not enough(plenty):
        too_few, plenty = plenty, min(2 * plenty, MAX_MORE_CALLS)
    while _round_up(too_few + 1) != _round_up(plenty):
        middle = (too_few + plenty) // 2
        if enough(middle):
            plenty = middle
        else:
            too_few = middle
    return _round_up(plenty)


def _round_up(count: int) -> int:
    """Round up to two significant figures, a number a person reads: 1234 -> 1300, 87 -> 87."""
    if count < 100:
        return count
    step = 10 ** (len(str(count)) - 2)
    return -(-count // step) * step


def _points(fraction: float) -> str:
    """A difference of rates as percentage points with one decimal, without its sign: 0.041 -> '4.1'."""
    return f"{abs(fraction) * 100:.1f}"


def _signed_points(fraction: float) -> str:
    """Percentage points with one decimal and a true minus sign; never '-0.0'."""
    text = _points(fraction)
    return f"{MINUS}{text}" if fraction < 0 and text != _points(0.0) else text


def _interval_text(interval: Interval) -> str:
    """'1.2–7.0' when both ends are positive; '−5.1 to −0.9' as soon as one is negative, to read clearly."""
    low, high = _signed_points(interval.low), _signed_points(interval.high)
    if low.startswith(MINUS) or high.startswith(MINUS):
        return gettext("%(low)s to %(high)s") % {"low": low, "high": high}
    return f"{low}{EN_DASH}{high}"


def _percent_label(level: float) -> str:
    """0.95 -> '95%', 0.98333 -> '98.3%': one decimal at most, more only where rounding would say 100%."""
    for decimals in range(1, 8):
        text = f"{level * 100:.{decimals}f}".rstrip("0").rstrip(".")
        if text != "100":
            return f"{text}%"
    return f"{level * 100}%"
