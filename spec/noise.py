"""Service-time noise and simple delay distributions.

A noise model turns a profile's mean into a sampled service time by a
multiplicative factor with mean 1, so the profile keeps meaning "the mean".
Samplers draw in blocks from a seeded ``numpy.random.Generator``, because the
simulator asks for one value per batch and a million single draws would cost
more than the rest of the run.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import numpy as np

from spec.validation import ConfigError, check_non_negative, check_positive

__all__ = [
    "NoiseModel",
    "NoNoise",
    "LognormalNoise",
    "GammaNoise",
    "ResidualNoise",
    "Delay",
    "ConstantDelay",
    "LognormalDelay",
    "EmpiricalDelay",
    "BlockSampler",
]

_BLOCK = 4096


class NoiseModel(abc.ABC):
    """Multiplicative noise with mean 1 around a profile's mean service time."""

    @abc.abstractmethod
    def factors(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` independent factors with mean 1."""


class NoNoise(NoiseModel):
    """Every batch takes exactly the profile's mean (the M/D/1 case)."""

    def factors(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.ones(count)


class LognormalNoise(NoiseModel):
    """Lognormal factors with mean 1 and coefficient of variation ``cv``."""

    def __init__(self, *, cv: float):
        self.cv = check_non_negative("noise.cv", cv)
        self._sigma = math.sqrt(math.log1p(self.cv**2))

    def factors(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.cv == 0:
            return np.ones(count)
        # mean of lognormal(mu, sigma) is exp(mu + sigma^2 / 2); mu makes it 1
        return rng.lognormal(mean=-0.5 * self._sigma**2, sigma=self._sigma, size=count)


class GammaNoise(NoiseModel):
    """Gamma factors with mean 1 and coefficient of variation ``cv``.

    ``cv=1`` makes service times exponential: the M/M/1 case.
    """

    def __init__(self, *, cv: float):
        self.cv = check_positive("noise.cv", cv)
        self._shape = 1.0 / self.cv**2

    def factors(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.gamma(shape=self._shape, scale=1.0 / self._shape, size=count)


class ResidualNoise(NoiseModel):
    """Resample measured ratios of observed to fitted latency (normalised to mean 1)."""

    def __init__(self, *, ratios: Sequence[float]):
        values = np.asarray(ratios, dtype=float)
        if values.ndim != 1 or len(values) == 0 or np.any(~np.isfinite(values)) or np.any(values <= 0):
            raise ConfigError("noise.ratios", list(ratios)[:5], "a non-empty list of finite ratios > 0")
        self.ratios = values / values.mean()

    def factors(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.ratios, size=count, replace=True)


class Delay(abc.ABC):
    """A distribution of a delay in seconds (cold starts, for example)."""

    @abc.abstractmethod
    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` independent delays in seconds."""

    @property
    @abc.abstractmethod
    def mean_s(self) -> float:
        """The distribution's mean in seconds."""


class ConstantDelay(Delay):
    """Always ``value_s``."""

    def __init__(self, *, value_s: float):
        self.value_s = check_non_negative("delay.value_s", value_s)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(count, self.value_s)

    @property
    def mean_s(self) -> float:
        return self.value_s


class LognormalDelay(Delay):
    """Lognormal with the given mean and coefficient of variation."""

    def __init__(self, *, mean_s: float, cv: float):
        self._mean_s = check_positive("delay.mean_s", mean_s)
        self.cv = check_non_negative("delay.cv", cv)
        self._sigma = math.sqrt(math.log1p(self.cv**2))

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.cv == 0:
            return np.full(count, self._mean_s)
        mu = math.log(self._mean_s) - 0.5 * self._sigma**2
        return rng.lognormal(mean=mu, sigma=self._sigma, size=count)

    @property
    def mean_s(self) -> float:
        return self._mean_s


class EmpiricalDelay(Delay):
    """Resample measured delays (for example cold starts measured live)."""

    def __init__(self, *, samples_s: Sequence[float]):
        values = np.asarray(samples_s, dtype=float)
        if values.ndim != 1 or len(values) == 0 or np.any(~np.isfinite(values)) or np.any(values < 0):
            raise ConfigError("delay.samples_s", list(samples_s)[:5], "a non-empty list of delays >= 0")
        self.samples_s = values

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.samples_s, size=count, replace=True)

    @property
    def mean_s(self) -> float:
        return float(self.samples_s.mean())


class BlockSampler:
    """Hands out draws one at a time from blocks drawn in advance.

    Draw order is fixed by the seed, so runs stay bit-for-bit repeatable.
    """

    __slots__ = ("_draw", "_rng", "_block", "_next")

    def __init__(self, draw, rng: np.random.Generator):
        self._draw = draw
        self._rng = rng
        self._block: list[float] = []
        self._next = 0

    def __call__(self) -> float:
        if self._next >= len(self._block):
            self._block = self._draw(_BLOCK, self._rng).tolist()
            self._next = 0
        value = self._block[self._next]
        self._next += 1
        return value
