"""Fault injection for the simulator: the configuration, its JSON form, and the decisions.

A `FaultInjector` decides, per Integration API request and before anything is applied,
whether the request fails and how long the simulated processing takes. Every random draw
comes from RNGs seeded at start-up, so the same seed and the same request order give the
same faults. 409s are never injected: they only come from real parallel requests.

Decision order: ``auth_failure`` (401) → ``outage`` (503) → ``rate_limit`` (429 past the
Application's token bucket) → ``fail_sessions`` (500) → one uniform draw against the
cumulative rates of 429, 500, 502, 503, hang, reset and lost_response. ``lost_response`` is
the one fault that *does* apply the request: the answer is then held back for ``hang_s`` so
the client times out on a request that took effect.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "FAULT_KINDS",
    "RANDOM_FAULTS",
    "FaultConfig",
    "FaultConfigError",
    "FaultInjector",
    "TokenBucket",
]

# Faults drawn at random, in the order their rates are stacked.
RANDOM_FAULTS: tuple[str, ...] = ("429", "500", "502", "503", "hang", "reset", "lost_response")
# Every fault kind counted in the simulator's statistics.
FAULT_KINDS: tuple[str, ...] = (
    *RANDOM_FAULTS,
    "outage",
    "fail_session",
    "auth_failure",
    "rate_limit",
)

_RATE_FIELDS = {f"rate_{k}": k for k in RANDOM_FAULTS}
_DISTRIBUTIONS = ("uniform", "lognormal")


class FaultConfigError(ValueError):
    """A fault configuration value is missing its type or range."""


@dataclass(slots=True)
class FaultConfig:
    """Every knob of the fault injector; the JSON form uses the same field names."""

    rate_429: float = 0.0
    retry_after_s: int = 1
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_hang: float = 0.0
    # None: a hanging request is never answered (until the client gives up or shutdown).
    hang_s: float | None = 30.0
    rate_reset: float = 0.0
    rate_lost_response: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    latency_distribution: str = "uniform"
    latency_tail_rate: float = 0.0
    latency_tail_ms: float = 0.0
    outage: bool = False
    auth_failure: bool = False
    # The Application's request limit: a token bucket of `rate_limit_rps` (0: no limit)
    # holding up to `rate_limit_burst` requests.
    rate_limit_rps: float = 0.0
    rate_limit_burst: int = 20
    fail_sessions: list[str] = field(default_factory=list)
    reject_attributes: list[str] = field(default_factory=list)
    reject_attribute_prefixes: list[str] = field(default_factory=lambda: ["x-undefined"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def merged(self, changes: dict[str, Any]) -> FaultConfig:
        """A validated copy with `changes` applied (the PATCH semantics)."""
        if not isinstance(changes, dict):
            raise FaultConfigError("the fault configuration must be a JSON object")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FaultConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        data = self.to_json()
        for name, value in changes.items():
            data[name] = _check(name, value)
        cfg = FaultConfig(**data)
        total = sum(getattr(cfg, name) for name in _RATE_FIELDS)
        if total > 1.0 + 1e-9:
            raise FaultConfigError(f"the fault rates add up to {total:g}, more than 1")
        return cfg

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        """A validated config from defaults plus `data` (the PUT semantics)."""
        return cls().merged(data)


def _check(name: str, value: Any) -> Any:  # noqa: C901 - one flat branch per setting type
    if name == "rate_limit_rps":
        if not _is_number(value) or float(value) < 0:
            raise FaultConfigError("rate_limit_rps must be a non-negative number (0: no limit)")
        return float(value)
    if name == "rate_limit_burst":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FaultConfigError("rate_limit_burst must be a positive integer (requests)")
        return value
    if name.startswith("rate_") or name == "latency_tail_rate":
        if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
            raise FaultConfigError(f"{name} must be a number between 0 and 1")
        return float(value)
    if name == "retry_after_s":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FaultConfigError("retry_after_s must be a non-negative integer (seconds)")
        return value
    if name == "hang_s":
        if value is None:
            return None
        if not _is_number(value) or float(value) <= 0:
            raise FaultConfigError("hang_s must be a positive number of seconds, or null")
        return float(value)
    if name in ("latency_ms", "latency_jitter_ms", "latency_tail_ms"):
        if not _is_number(value) or float(value) < 0:
            raise FaultConfigError(f"{name} must be a non-negative number of milliseconds")
        return float(value)
    if name == "latency_distribution":
        if value not in _DISTRIBUTIONS:
            raise FaultConfigError(f"latency_distribution must be one of {_DISTRIBUTIONS}")
        return value
    if name in ("outage", "auth_failure"):
        if not isinstance(value, bool):
            raise FaultConfigError(f"{name} must be true or false")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FaultConfigError(f"{name} must be a list of strings")
    return list(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TokenBucket:
    """A request limit as APIs enforce it: `rate` tokens a second, at most `burst` saved."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> float | None:
        """Take a token: None when one was free, else the seconds until one will be."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / self.rate


class FaultInjector:
    """Seeded decisions about faults and latency for each request."""

    def __init__(
        self,
        config: FaultConfig | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seed = seed
        self._clock = clock
        self._bucket: TokenBucket | None = None
        self.configure(config or FaultConfig())
        self.reseed(seed)

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def seed(self) -> int | None:
        return self._seed

    def configure(self, config: FaultConfig) -> None:
        """Swap the configuration in place; the RNG streams continue."""
        self._config = config
        acc = 0.0
        table: list[tuple[float, str]] = []
        for name, kind in _RATE_FIELDS.items():
            rate = getattr(config, name)
            if rate > 0:
                acc += rate
                table.append((acc, kind))
        self._cumulative = tuple(table)
        self._fail_sessions = frozenset(config.fail_sessions)
        self._reject = frozenset(config.reject_attributes)
        self._reject_prefixes = tuple(config.reject_attribute_prefixes)
        self._has_latency = config.latency_ms > 0 or config.latency_tail_rate > 0
        self._has_attribute_rules = bool(self._reject or self._reject_prefixes)
        bucket = self._bucket
        if config.rate_limit_rps <= 0:
            self._bucket = None
        elif bucket is None:
            bucket = TokenBucket(config.rate_limit_rps, config.rate_limit_burst, self._clock())
            self._bucket = bucket
        else:  # a changed limit keeps the tokens saved so far
            bucket.rate, bucket.burst = config.rate_limit_rps, config.rate_limit_burst
        self._limit_wait = 0.0

    def reseed(self, seed: int | None) -> None:
        """Restart both RNG streams, so a run can be reproduced from its seed."""
        self._seed = seed
        # Separate streams: changing the latency settings must not shift the fault sequence.
        self._fault_rng = random.Random(seed)
        self._latency_rng = random.Random(None if seed is None else seed + 1)

    def decide(self, session_id: str | None) -> str | None:
        """The fault for this request (one of `FAULT_KINDS`), or None to process it."""
        cfg = self._config
        if cfg.auth_failure:
            return "auth_failure"
        if cfg.outage:
            return "outage"
        if self._bucket is not None:
            wait = self._bucket.take(self._clock())
            if wait is not None:
                self._limit_wait = wait
                return "rate_limit"
        if session_id is not None and session_id in self._fail_sessions:
            return "fail_session"
        if not self._cumulative:
            return None
        draw = self._fault_rng.random()
        for bound, kind in self._cumulative:
            if draw < bound:
                return kind
        return None

    def retry_after_s(self, fault: str) -> int:
        """The Retry-After of a 429 or 503 just decided: for the rate limit, the time until
        the bucket has a token, in whole seconds as the header carries them (at least 1)."""
        if fault == "rate_limit":
            return max(1, math.ceil(self._limit_wait))
        return self._config.retry_after_s

    def latency_s(self) -> float:
        """Simulated processing time of one request, in seconds."""
        if not self._has_latency:
            return 0.0
        cfg = self._config
        rng = self._latency_rng
        mean = cfg.latency_ms
        jitter = cfg.latency_jitter_ms
        if mean <= 0:
            ms = 0.0
        elif cfg.latency_distribution == "lognormal":
            # Parameters chosen so the distribution's mean is latency_ms and its standard
            # deviation is latency_jitter_ms: a long right tail, as real services show.
            sigma2 = math.log1p((jitter / mean) ** 2)
            ms = rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
        else:
            ms = max(0.0, mean + rng.uniform(-jitter, jitter)) if jitter else mean
        if cfg.latency_tail_rate > 0 and rng.random() < cfg.latency_tail_rate:
            ms += cfg.latency_tail_ms
        return ms / 1000.0

    def rejects_attribute(self, name: str) -> bool:
        """Whether an attribute name counts as not defined in the Application."""
        if not self._has_attribute_rules:
            return False
        return name in self._reject or name.startswith(self._reject_prefixes)
