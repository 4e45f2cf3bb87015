"""Random search: a spec's ``[random]`` table draws ``samples`` points, each assigning every listed
setting a value from its distribution (uniform, log-uniform, integers, a choice); the cells are the
grid's product times those points times the seeds.

The draw is reproducible on every machine: ``np.random.default_rng(seed)``, then sample by sample
and within a sample key by key in sorted order, one ``rng.random()`` (a float in [0, 1)) per value,
mapped through the distribution's inverse CDF; floats are rounded to :data:`SIG_DIGITS` significant
digits (so a value is the same number in every process, key and table). A float range must be wide
enough for that rounding to tell its values apart (:data:`MIN_RELATIVE_WIDTH`), and a search draws
at most :data:`MAX_SAMPLES` points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from initlab.errors import InitlabError

__all__ = ["SIG_DIGITS", "MIN_RELATIVE_WIDTH", "MAX_SAMPLES", "DISTRIBUTIONS", "Uniform", "LogUniform",
           "RandInt", "Choice", "RandomSearch", "parse_random"]

#: Significant digits a drawn float keeps (6: ``0.00123457``).
SIG_DIGITS = 6

#: A float range ``[low, high]`` is refused when ``high - low < MIN_RELATIVE_WIDTH * max(|low|, |high|)``
#: (``10 ** (1 - SIG_DIGITS)`` = 1e-5): rounded to :data:`SIG_DIGITS` digits, values that close are
#: one or a few numbers (``[1000000, 1000001]`` is all 1e6), so the draw would collapse silently.
MIN_RELATIVE_WIDTH = 10.0 ** (1 - SIG_DIGITS)

#: The most points ``[random] samples`` may draw: every cell is built and keyed before anything runs
#: (0.4-0.6 ms each on a loaded 2-core machine: 100,000 take about a minute), so a typo such as
#: ``samples = 10000000`` would expand for an hour or more, silently.
MAX_SAMPLES = 100_000

#: Keys of ``[random]`` that are not settings: the number of points and the draw's seed.
_OWN_KEYS = ("samples", "seed")


def _round(value: float, low: float, high: float) -> float:
    """``value`` to :data:`SIG_DIGITS` significant digits, kept within ``[low, high]``."""
    return min(max(float(f"{value:.{SIG_DIGITS}g}"), low), high)


def _index(u: float, n: int) -> int:
    """``floor(u * n)`` for ``u`` in [0, 1), never ``n`` (float rounding near ``u = 1``)."""
    return min(int(u * n), n - 1)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shown(key: str, name: str, args: Any) -> str:
    return f"random.{key} = {{ {name} = {args!r} }}"


def _bounds(key: str, name: str, args: Any, kind: str) -> tuple[Any, Any]:
    """``[low, high]`` with ``low < high`` (two numbers, or two integers for ``kind="int"``); two
    numbers also need a finite width ``high - low`` of at least ``MIN_RELATIVE_WIDTH * max(|low|,
    |high|)`` (:data:`MIN_RELATIVE_WIDTH`)."""
    ok = _is_number if kind == "number" else (lambda v: isinstance(v, int) and not isinstance(v, bool))
    what = "two numbers" if kind == "number" else "two integers (both included)"
    if not (isinstance(args, list) and len(args) == 2 and all(ok(v) for v in args)):
        raise InitlabError(f"{_shown(key, name, args)} is invalid: give [LOW, HIGH], {what}, e.g. "
                           f"{name} = [1, 10]")
    low, high = args
    if not low < high:
        raise InitlabError(f"{_shown(key, name, args)} is invalid: low must be < high (a constant goes under "
                           "[fixed])")
    if kind == "number":
        _check_width(key, name, args)
    return low, high


def _check_width(key: str, name: str, args: list[Any]) -> None:
    """A float range's width is finite and at least :data:`MIN_RELATIVE_WIDTH` of its larger end."""
    low, high = (float(v) for v in args)
    width = high - low
    if not math.isfinite(width):
        raise InitlabError(f"{_shown(key, name, args)} is invalid: high - low overflows a float (the width "
                           "is not finite): narrow the range")
    if width < MIN_RELATIVE_WIDTH * max(abs(low), abs(high)):
        raise InitlabError(f"{_shown(key, name, args)} is too narrow for values rounded to {SIG_DIGITS} "
                           f"significant digits to differ (it needs high - low >= {MIN_RELATIVE_WIDTH:g} * "
                           "max(|low|, |high|)): widen it, or put one value under [fixed]")


@dataclass(frozen=True)
class Uniform:
    """A float uniform on ``[low, high]``: :math:`x = low + u\\,(high - low)`, ``u`` uniform in [0, 1).

    Raises (:meth:`parse`):
        InitlabError: not two numbers, ``low >= high``, or a width ``high - low`` that is not finite
            or is below :data:`MIN_RELATIVE_WIDTH` ``* max(|low|, |high|)``.
    """

    name: ClassVar[str] = "uniform"
    kind: ClassVar[str] = "float"
    low: float
    high: float

    @classmethod
    def parse(cls, key: str, args: Any) -> Uniform:
        """From the spec's ``[LOW, HIGH]``."""
        low, high = _bounds(key, cls.name, args, "number")
        return cls(float(low), float(high))

    def draw(self, u: float) -> float:
        """The value at ``u`` in [0, 1), rounded (``[low, high]``, both included after rounding)."""
        return _round(self.low + u * (self.high - self.low), self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        """``{"uniform": [low, high]}``, as in the spec."""
        return {self.name: [self.low, self.high]}


@dataclass(frozen=True)
class LogUniform:
    """A float whose log is uniform on ``[log low, log high]`` (a learning rate, a weight decay):
    :math:`x = \\exp(\\log low + u\\,(\\log high - \\log low))`.

    Raises (:meth:`parse`):
        InitlabError: not two numbers, ``low <= 0``, ``low >= high``, or ``high - low`` below
            :data:`MIN_RELATIVE_WIDTH` ``* high``.
    """

    name: ClassVar[str] = "loguniform"
    kind: ClassVar[str] = "float"
    low: float
    high: float

    @classmethod
    def parse(cls, key: str, args: Any) -> LogUniform:
        """From the spec's ``[LOW, HIGH]``, ``0 < LOW < HIGH``."""
        low, high = _bounds(key, cls.name, args, "number")
        if low <= 0:
            raise InitlabError(f"{_shown(key, cls.name, args)} is invalid: low must be > 0 on a log scale, "
                               "e.g. loguniform = [1e-4, 0.1]")
        return cls(float(low), float(high))

    def draw(self, u: float) -> float:
        """The value at ``u`` in [0, 1), rounded (``[low, high]``, both included after rounding)."""
        log_low, log_high = math.log(self.low), math.log(self.high)
        return _round(math.exp(log_low + u * (log_high - log_low)), self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        """``{"loguniform": [low, high]}``, as in the spec."""
        return {self.name: [self.low, self.high]}


@dataclass(frozen=True)
class RandInt:
    """An integer uniform on ``low, ..., high`` (both included): :math:`low + \\lfloor u\\,(high - low
    + 1)\\rfloor`.

    Raises (:meth:`parse`):
        InitlabError: not two integers, or ``low >= high``.
    """

    name: ClassVar[str] = "randint"
    kind: ClassVar[str] = "int"
    low: int
    high: int

    @classmethod
    def parse(cls, key: str, args: Any) -> RandInt:
        """From the spec's ``[LOW, HIGH]``."""
        return cls(*_bounds(key, cls.name, args, "int"))

    def draw(self, u: float) -> int:
        """The integer at ``u`` in [0, 1)."""
        return self.low + _index(u, self.high - self.low + 1)

    def to_dict(self) -> dict[str, Any]:
        """``{"randint": [low, high]}``, as in the spec."""
        return {self.name: [self.low, self.high]}


@dataclass(frozen=True)
class Choice:
    """One of ``values``, each with probability ``1 / len(values)``: ``values[floor(u n)]``.

    Raises (:meth:`parse`):
        InitlabError: not a non-empty list of single values, or a repeated value.
    """

    name: ClassVar[str] = "choice"
    kind: ClassVar[str] = "any"
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, key: str, args: Any) -> Choice:
        """From the spec's list of values."""
        if not isinstance(args, list) or not args or any(isinstance(v, (list, dict)) for v in args):
            raise InitlabError(f"{_shown(key, cls.name, args)} is invalid: give a non-empty list of single "
                               "values, e.g. choice = [\"auto\", \"he_normal\"]")
        if len({repr(v) for v in args}) != len(args):
            raise InitlabError(f"{_shown(key, cls.name, args)} repeats a value: list each once")
        return cls(tuple(args))

    def draw(self, u: float) -> Any:
        """The value at ``u`` in [0, 1)."""
        return self.values[_index(u, len(self.values))]

    def to_dict(self) -> dict[str, Any]:
        """``{"choice": [values]}``, as in the spec."""
        return {self.name: list(self.values)}


Distribution = Uniform | LogUniform | RandInt | Choice

#: The distributions a ``[random]`` key may name, by name.
DISTRIBUTIONS: dict[str, type] = {d.name: d for d in (Uniform, LogUniform, RandInt, Choice)}


@dataclass(frozen=True)
class RandomSearch:
    """A checked ``[random]`` table: ``samples`` points drawn with ``seed``, each assigning every key
    of ``params`` (sorted) a value of its distribution (Bergstra and Bengio, "Random Search for
    Hyper-Parameter Optimization", JMLR 13, 2012).
    """

    samples: int
    seed: int = 0
    params: dict[str, Distribution] = field(default_factory=dict)

    def points(self) -> list[dict[str, Any]]:
        """The ``samples`` drawn points, in draw order: ``np.random.default_rng(seed)``, sample by
        sample, keys sorted, one ``rng.random()`` per value (module docstring).

        >>> search = RandomSearch(3, seed=0, params={"lr": LogUniform(1e-3, 1e-1), "width": RandInt(16, 32)})
        >>> [sorted(p) for p in search.points()] == [["lr", "width"]] * 3
        True
        >>> search.points() == RandomSearch(3, seed=0, params=dict(search.params)).points()
        True
        """
        import numpy as np

        rng = np.random.default_rng(self.seed)
        keys = sorted(self.params)
        return [{k: self.params[k].draw(float(rng.random())) for k in keys} for _ in range(self.samples)]

    def to_dict(self) -> dict[str, Any]:
        """The table as in the spec: ``samples``, ``seed``, then ``KEY = { DISTRIBUTION = ARGS }``."""
        drawn = {k: d.to_dict() for k, d in self.params.items()}
        return {"samples": self.samples, "seed": self.seed, **drawn}


def _count(name: str, value: Any, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InitlabError(f"random.{name} = {value!r} is invalid: give an integer >= {minimum} ({what})")
    return value


def _distribution(key: str, value: Any) -> Distribution:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise InitlabError(f"random.{key} = {value!r} is not a distribution: write {key} = {{ uniform = "
                           f"[LOW, HIGH] }} (or loguniform, randint, choice)")
    (name, args), = value.items()
    if name not in DISTRIBUTIONS:
        raise InitlabError(f"random.{key}: unknown distribution {name!r}: use one of "
                           + ", ".join(DISTRIBUTIONS))
    return DISTRIBUTIONS[name].parse(key, args)


def parse_random(table: Mapping[str, Any]) -> RandomSearch:
    """Check a ``[random]`` table (``samples``, optional ``seed``, one distribution per key) and
    return it. Whether each key is a setting of the experiment is checked by the spec.

    Raises:
        InitlabError: ``samples`` missing, < 1 or > :data:`MAX_SAMPLES`, a bad ``seed``, no key to
            draw, a key whose value is not one distribution, an unknown distribution, bad bounds
            (``low >= high``, ``low <= 0`` for ``loguniform``, non-integers for ``randint``, a float
            range too wide for a float or too narrow for the rounding: :data:`MIN_RELATIVE_WIDTH`), an
            empty ``choice`` or one that repeats a value.

    >>> parse_random({"samples": 2, "lr": {"loguniform": [1e-3, 1e-1]}}).params
    {'lr': LogUniform(low=0.001, high=0.1)}
    """
    if "samples" not in table:
        raise InitlabError("[random] has no samples: add samples = N, the number of points to draw")
    samples = _count("samples", table["samples"], 1, "the number of points to draw, e.g. samples = 8")
    if samples > MAX_SAMPLES:
        raise InitlabError(f"random.samples = {samples} is more than {MAX_SAMPLES}, the most one spec draws: "
                           f"give samples <= {MAX_SAMPLES} (for more points, run several specs with other "
                           "[random] seeds)")
    seed = _count("seed", table.get("seed", 0), 0, "the draw's seed; the cells' seeds are [sweep] seeds")
    params = {k: _distribution(k, v) for k, v in sorted(table.items()) if k not in _OWN_KEYS}
    if not params:
        raise InitlabError("[random] names no setting to draw: add one, e.g. lr = { loguniform = [1e-4, "
                           "1e-1] }")
    return RandomSearch(samples, seed, params)
