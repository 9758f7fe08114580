"""One series' shift detector: windows in, alerts out.

A :class:`Detector` watches one signal of one key (the latency of ``model:gpt-4o``,
the error rate of ``upstream:openai`` ...). Observations are summed into the open
window (:meth:`Detector.add`, or the monitor writing :attr:`Detector.sums` directly);
:meth:`Detector.close` ends the window and judges it:

1. *Level and sampling noise.* Latency: the mean of log-seconds (the log of the
   window's geometric mean), noise ``s2 / n`` with ``s2`` the learnt per-request
   variance of log-latency. Error and hit rate: the proportion, noise
   ``p (1 - p) / n`` around the baseline ``p``. Spend: log USD per second, noise
   ``m2 / (T S^2)`` with ``m2`` the learnt rate of squared per-request costs (a
   compound Poisson sum; the delta method). A window with fewer than ``min_count``
   observations is not judged: it is carried into the next, at most ``max_merge``
   times, then dropped.
2. *A score* ``z``: the distance from the baseline in units of
   ``sqrt(noise + tau2)``. ``tau2`` is the learnt window-to-window spread beyond
   sampling (load, prompt mix), never below a floor (``*_spread``) -- the size of a
   change not worth an alert, so a busy series does not alarm on a trivial one. A
   proportion's score comes from the exact binomial tail (mid-p) while counts are
   small: 1 error in 3 requests against a 1% baseline scores 2.2, not the 5.7 of the
   normal approximation.
3. *Autocorrelation.* Load drifts over tens of seconds, so successive scores are
   correlated and a run of them says less than as many independent ones; each
   score is multiplied by ``sqrt((1 - phi) / (1 + phi))``, ``phi`` their learnt
   lag-1 autocorrelation (``decorrelate``).
4. *A decision* with hysteresis. ``cusum``: one-sided sums ``S = max(0, S + z - k)``
   (for the watched directions) raise when one passes ``cusum_threshold``;
   ``zscore``: ``raise_after`` windows in a row beyond ``z_threshold``. Either clears
   after ``clear_after`` windows in a row scoring under ``clear_below`` toward the
   shift.
5. *Learning.* The baseline is an EWMA (weight ``alpha`` per window) of residuals
   clipped at 3 sigma (a Huber mean: one odd window barely moves it), and so are the
   spread and the noise. The first ``warmup`` windows only learn. While evidence
   builds up (a CUSUM above half its threshold) windows are held, not learnt, and
   learnt once it fades -- a shift must not teach the detector that it is normal
   before it is raised. While an alert stands nothing is learnt, so a persistent
   shift does not become normal within seconds; after ``accept_after`` seconds it
   does: the alert clears and the detector learns afresh from the new level.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import NormalDist
from typing import TypeAlias

from hotpath._errors import ConfigError
from hotpath._options import check_text
from hotpath.observe._anomaly_settings import SIGNALS, Alert, DetectorSettings, Direction, Signal

__all__ = ["Detector", "Sums", "binomial_z"]


# Spend rates are logged with this added (USD per second): a window of free calls is 0.
SPEND_EPSILON = 1e-6
# Latencies are clamped to [1 us, 1e6 s] before their log is taken.
LATENCY_MIN = 1e-6
LATENCY_MAX = 1e6
LOG_LATENCY_MIN = math.log(LATENCY_MIN)
LOG_LATENCY_MAX = math.log(LATENCY_MAX)

_HUBER = 3.0  # residuals are clipped at this many sigma before they are learnt
_NOISE_JUMP = 4.0  # a window's noise estimate counts for at most this many times the learnt one
_SHADOW = 0.2  # EWMA weight of the level followed while an alert stands
_RATE_FLOOR = 0.001  # a proportion's baseline is kept within [floor, 1 - floor]
_NORMAL_VARIANCE = 20.0  # binomial n p q from which the normal approximation is used
_NORMAL = NormalDist()
_HOLD = 24  # windows held while a shift may be building, at most (then the oldest is learnt)
# a window held: count, sum, sum of squares, span, level, score
_Held: TypeAlias = tuple[int, float, float, float, float, float]
_FIRST_SCORED = 3  # warm-up windows before the first score (for the autocorrelation)
_PRIOR_PAIRS = 20  # the autocorrelation starts at 0, as if from this many pairs of scores
_MAX_PHI = 0.9
_TINY = 1e-12  # the least variance of a score's scale: a constant series does not divide by 0


def binomial_z(k: int, n: int, p: float) -> float:
    """The normal score of ``k`` events in ``n`` trials of probability ``p`` (0 < p < 1):
    positive above ``n p``, negative below.

    From the exact binomial tail (mid-p: ``P(X beyond k) + P(X = k) / 2``) while
    ``n p (1 - p)`` is small, where the normal approximation overstates rare events;
    ``(k - n p) / sqrt(n p (1 - p))`` above that.
    """
    mean = n * p
    var = mean * (1 - p)
    if var >= _NORMAL_VARIANCE:
        return (k - mean) / math.sqrt(var)
    q = 1 - p
    upper = k >= mean
    at = math.exp(
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log(q)
    )
    tail, term, j = 0.0, at, k
    if upper:
        step = p / q
        while j < n:
            term *= (n - j) / (j + 1) * step
            j += 1
            tail += term
            if term < 1e-17 * (tail + at):
                break
    else:
        step = q / p
        while j > 0:
            term *= j / (n - j + 1) * step
            j -= 1
            tail += term
            if term < 1e-17 * (tail + at):
                break
    mid = min(max(tail + at / 2, 1e-300), 1 - 1e-16)
    return -_NORMAL.inv_cdf(mid) if upper else _NORMAL.inv_cdf(mid)


class Sums:
    """The open window's running sums: observations, their sum and sum of squares
    (of log-seconds for latency, of USD for spend; 1 per error or hit)."""

    __slots__ = ("count", "square", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.square = 0.0


class Detector:
    """The shift detector of one series (``signal`` of ``key``); see the module docstring.

    Feed it with :meth:`add` and end each window with :meth:`close`, which returns the
    alert the window raised or cleared, if any. Not thread-safe.
    """

    __slots__ = (
        "_alert",
        "_alert_age",
        "_c0",
        "_c1",
        "_carried",
        "_down",
        "_held",
        "_inband",
        "_judged",
        "_key",
        "_kind",
        "_last_z",
        "_level",
        "_merged",
        "_mu",
        "_noise",
        "_norm",
        "_pairs",
        "_settings",
        "_shadow",
        "_signal",
        "_span",
        "_spread",
        "_tau2",
        "_up",
        "_watch_down",
        "_watch_up",
        "sums",
    )

    def __init__(self, signal: Signal, key: str, settings: DetectorSettings | None = None) -> None:
        if signal not in SIGNALS:
            raise ConfigError(f"signal must be one of {SIGNALS}, got {signal!r}")
        self._signal: Signal = signal
        self._key = check_text(key, "key")
        if settings is None:
            settings = DetectorSettings()
        elif not isinstance(settings, DetectorSettings):
            raise ConfigError(f"settings must be a DetectorSettings, got {settings!r}")
        self._settings = settings
        # "log": latency; "rate": error and hit rate; "sum": spend
        self._kind = "log" if signal == "latency" else "sum" if signal == "spend_rate" else "rate"
        self._spread = (
            settings.latency_spread
            if self._kind == "log"
            else settings.spend_spread
            if self._kind == "sum"
            else settings.rate_spread
        )
        self._watch_up = settings.watches(signal, "up")
        self._watch_down = settings.watches(signal, "down")
        self.sums = Sums()
        self._span = 0.0
        self._merged = 0
        self._carried = 0  # observations carried over from sparse windows
        self._alert: Alert | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget everything learnt (a new series, or a shift accepted as the new normal)."""
        self._judged = 0
        self._mu = 0.0  # the baseline level
        self._norm = 0.0  # rates: EWMA of window counts (the baseline is events / _norm)
        self._noise = 0.0  # latency: per-request variance of log; spend: USD^2 per second
        self._tau2 = 0.0  # window-to-window variance beyond sampling noise
        self._level = math.nan  # the last judged window's level
        self._up = self._down = 0.0
        self._inband = 0
        self._alert_age = 0.0
        self._shadow = 0.0
        # lag-1 autocorrelation of the scores: EWMA of z^2 and z_t z_t-1, from a prior
        self._c0, self._c1 = 1.0, 0.0
        self._pairs = 0
        self._last_z = math.nan
        self._held: deque[_Held | None] = deque()  # windows not learnt yet (None: a gap)

    # -- observations -----------------------------------------------------------------

    def add(self, value: float) -> None:
        """One observation: a latency in seconds, ``1.0`` / ``0.0`` for an error or a
        hit (or not), a cost in USD. NaN and negative values are ignored."""
        if not value >= 0:
            return
        if self._kind == "log":
            value = math.log(min(max(value, LATENCY_MIN), LATENCY_MAX))
        sums = self.sums
        sums.count += 1
        sums.total += value
        sums.square += value * value

    # -- state ------------------------------------------------------------------------

    @property
    def signal(self) -> Signal:
        return self._signal

    @property
    def key(self) -> str:
        return self._key

    @property
    def fed(self) -> bool:
        """Whether the open window has had observations (beyond those carried over)."""
        return self.sums.count > self._carried

    @property
    def active(self) -> Alert | None:
        """The alert standing (as raised), or ``None``."""
        return self._alert

    @property
    def building(self) -> bool:
        """Whether evidence of a shift is building (its windows are held back from
        the baseline until it raises or fades)."""
        return bool(self._held) or self._pending()

    @property
    def warm(self) -> bool:
        """Whether the warm-up is over (alerts can be raised)."""
        return self._judged >= self._settings.warmup

    @property
    def baseline(self) -> float:
        """The baseline level in the signal's units (NaN before the first judged window)."""
        return self._natural(self._mu) if self._judged else math.nan

    @property
    def level(self) -> float:
        """The last judged window's level in the signal's units (NaN before one)."""
        return self._natural(self._level)

    def _natural(self, level: float) -> float:
        if self._kind == "log":
            return math.exp(level)
        if self._kind == "sum":
            return max(math.exp(level) - SPEND_EPSILON, 0.0)
        return level

    def __repr__(self) -> str:
        state = "alerting" if self._alert else "warm" if self.warm else "warming up"
        return f"Detector({self._signal!r}, {self._key!r}, {state}, baseline={self.baseline:.4g})"

    # -- windows ----------------------------------------------------------------------

    def close(self, duration: float, at: float) -> Alert | None:
        """End the open window, ``duration`` seconds long, and judge it; ``at`` stamps
        an alert (wall-clock seconds). Returns the alert raised or cleared, if any."""
        sums = self.sums
        self._span += duration
        if self._alert is not None:
            self._alert_age += duration
        if sums.count < self._settings.min_count:
            held = self._held
            if not held:
                self._last_z = math.nan  # a gap: the next score has no predecessor
            elif held[-1] is not None:
                held.append(None)  # one mark per gap, however long
            self._merged += 1
            if self._merged >= self._settings.max_merge:
                self._clear_sums()  # too sparse for too long: its data is stale
                if self._alert is None:
                    # ... and so is the evidence of a shift that was building
                    self._up = self._down = 0.0
                    held.clear()
                    self._last_z = math.nan
            self._carried = sums.count
            return None
        n, total, square, span = sums.count, sums.total, sums.square, self._span
        self._clear_sums()
        # latency: mean log-seconds; rates: the proportion; spend: log USD per second
        level = math.log(total / span + SPEND_EPSILON) if self._kind == "sum" else total / n
        self._level = level
        noise = self._sampling(n, span)
        scale2 = noise + max(self._tau2, self._floor2())  # _tau2 may be < 0: an average
        if self._judged < self._settings.warmup:
            if self._judged >= _FIRST_SCORED:
                self._correlate(self._score(n, total, level, noise, scale2))
            self._warm_up(n, total, square, span, level)
            return None
        z = self._score(n, total, level, noise, scale2)
        if (alert := self._alert) is not None:
            return self._judge_alert(alert, level, z, at)
        raised = self._decide(level, z * self._deflation(), at)
        held = self._held
        if raised is not None:
            held.clear()  # the shift's first windows: not normal
            self._last_z = math.nan
            return raised
        held.append((n, total, square, span, level, z))
        if self._pending():
            if len(held) > _HOLD:
                self._learn_window(held.popleft())
        else:
            while held:
                self._learn_window(held.popleft())
        return None

    def _learn_window(self, window: _Held | None) -> None:
        if window is None:
            self._last_z = math.nan
            return
        n, total, square, span, level, z = window
        noise = self._sampling(n, span)
        self._correlate(z)
        self._learn(n, total, square, span, level, noise, noise + max(self._tau2, self._floor2()))

    def _pending(self) -> bool:
        """Whether evidence of a shift is building up. Its windows are then held, not
        learnt (lest a shift teach the detector that it is normal before it is raised),
        and learnt once the evidence fades without an alert (else held-out windows
        would be the noisiest, and the spread learnt too small)."""
        s = self._settings
        if s.method == "cusum":
            return max(self._up, self._down) > s.cusum_threshold / 2
        return self._up > 0 or self._down > 0

    def _correlate(self, z: float) -> None:
        """Learn the lag-1 autocorrelation of the scores (clipped at 3)."""
        z = min(max(z, -_HUBER), _HUBER)
        last, self._last_z = self._last_z, z
        if math.isnan(last):
            return
        self._pairs += 1
        weight = max(self._settings.alpha, 1 / (self._pairs + _PRIOR_PAIRS))
        self._c0 += weight * (z * z - self._c0)
        self._c1 += weight * (z * last - self._c1)

    def _deflation(self) -> float:
        """``sqrt((1 - phi) / (1 + phi))``, ``phi`` the lag-1 autocorrelation of the scores:
        a run of scores correlated so sums to about ``(1 + phi) / (1 - phi)`` times the
        variance of independent ones (load drifting over tens of seconds makes them so),
        so each is worth that much less as evidence of a shift."""
        if not self._settings.decorrelate:
            return 1.0
        phi = min(max(self._c1 / self._c0, 0.0), _MAX_PHI)
        return math.sqrt((1 - phi) / (1 + phi))

    def _clear_sums(self) -> None:
        sums = self.sums
        sums.count = 0
        sums.total = sums.square = 0.0
        self._span = 0.0
        self._merged = 0
        self._carried = 0

    def _floor2(self) -> float:
        if self._kind != "rate":
            return max(self._spread * self._spread, _TINY)
        p = min(max(self._mu, _RATE_FLOOR), 1 - _RATE_FLOOR)
        spread = self._spread * min(p, 1 - p)  # relative to the rarer outcome's rate
        return max(spread * spread, _TINY)

    def _sampling(self, n: int, span: float) -> float:
        """The variance of a window's level from sampling alone, under the baseline."""
        if self._kind == "log":
            return self._noise / n
        if self._kind == "sum":
            rate = math.exp(self._mu)  # the delta method: var(log S) = var(S) / S^2
            return self._noise / span / (rate * rate)
        p = min(max(self._mu, _RATE_FLOOR), 1 - _RATE_FLOOR)
        return p * (1 - p) / n

    def _score(self, n: int, total: float, level: float, noise: float, scale2: float) -> float:
        if self._kind != "rate":
            return (level - self._mu) / math.sqrt(scale2)
        p = min(max(self._mu, _RATE_FLOOR), 1 - _RATE_FLOOR)
        # the exact tail covers sampling noise; the spread beyond it shrinks the score
        return binomial_z(round(total), n, p) * math.sqrt(noise / scale2)

    def _window_noise(self, n: int, total: float, square: float, span: float) -> float | None:
        """This window's estimate of the per-observation noise (None: no estimate)."""
        if self._kind == "log":
            return max(square - total * total / n, 0.0) / (n - 1) if n > 1 else None
        if self._kind == "sum":
            return square / span
        return None

    def _warm_up(self, n: int, total: float, square: float, span: float, level: float) -> None:
        """Running means (then the EWMA) of level, noise and spread."""
        i = self._judged
        weight = max(self._settings.alpha, 1 / (i + 1))
        noise = self._window_noise(n, total, square, span)
        if noise is not None:
            self._noise += weight * (noise - self._noise)
        if i:
            excess = (level - self._mu) ** 2 - self._sampling(n, span)
            self._tau2 += (1 / i) * (excess - self._tau2)
        self._move(n, level, weight)
        self._judged = i + 1

    def _learn(
        self,
        n: int,
        total: float,
        square: float,
        span: float,
        level: float,
        noise: float,
        scale2: float,
    ) -> None:
        """The Huber EWMA step of the baseline, the spread and the noise."""
        alpha = self._settings.alpha
        bound = _HUBER * math.sqrt(scale2)
        residual = min(max(level - self._mu, -bound), bound)
        self._tau2 += alpha * (residual * residual - noise - self._tau2)
        window_noise = self._window_noise(n, total, square, span)
        if window_noise is not None:
            window_noise = min(window_noise, _NOISE_JUMP * self._noise)
            self._noise += alpha * (window_noise - self._noise)
        self._move(n, self._mu + residual, alpha)
        self._judged += 1

    def _move(self, n: int, level: float, weight: float) -> None:
        if self._kind == "rate":
            # count-weighted: a busy window says more about the rate than a quiet one
            events = self._mu * self._norm
            self._norm += weight * (n - self._norm)
            events += weight * (n * level - events)
            self._mu = events / self._norm
        else:
            self._mu += weight * (level - self._mu)

    def _decide(self, level: float, z: float, at: float) -> Alert | None:
        s = self._settings
        # only watched directions accumulate: an unwatched shift is learnt, not held
        if s.method == "cusum":
            if self._watch_up:
                self._up = max(0.0, self._up + z - s.cusum_slack)
            if self._watch_down:
                self._down = max(0.0, self._down - z - s.cusum_slack)
            limit = s.cusum_threshold
        else:
            if self._watch_up:
                self._up = self._up + 1 if z > s.z_threshold else 0.0
            if self._watch_down:
                self._down = self._down + 1 if z < -s.z_threshold else 0.0
            limit = s.raise_after - 0.5
        direction: Direction
        if self._up > limit:
            direction, score = "up", self._up if s.method == "cusum" else z
        elif self._down > limit:
            direction, score = "down", self._down if s.method == "cusum" else z
        else:
            return None
        alert = Alert(
            signal=self._signal,
            key=self._key,
            direction=direction,
            value=self._natural(level),
            baseline=self._natural(self._mu),
            score=score,
            at=at,
            kind="raised",
        )
        self._alert = alert
        self._alert_age = 0.0
        self._inband = 0
        self._shadow = level
        return alert

    def _judge_alert(self, alert: Alert, level: float, z: float, at: float) -> Alert | None:
        """A window while ``alert`` stands: nothing is learnt; count in-band windows."""
        s = self._settings
        self._shadow += _SHADOW * (level - self._shadow)
        toward = z if alert.direction == "up" else -z
        self._inband = self._inband + 1 if toward < s.clear_below else 0
        if self._inband >= s.clear_after:
            baseline = self._mu
        elif self._alert_age >= s.accept_after:
            # the shift has lasted: it is the new normal, learnt afresh from its level
            baseline = self._shadow
            self._reset()
            self._mu = baseline
        else:
            return None
        self._alert = None
        self._up = self._down = 0.0
        self._inband = 0
        self._last_z = math.nan
        return Alert(
            signal=self._signal,
            key=self._key,
            direction=alert.direction,
            value=self._natural(level),
            baseline=self._natural(baseline),
            score=z,
            at=at,
            kind="cleared",
        )
