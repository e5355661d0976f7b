"""Checked configs: each frozen dataclass declares one constraint table, checked on construction.

A config derives from :class:`Checked` and declares ``CONSTRAINTS = {"field": constraint}`` for
the fields it introduces, and ``RULES`` for rules that tie fields together. Construction checks
the tables of the class and of every base class, so a rule written once (say, the one for
``sigma``) holds wherever the field is inherited, and a constraint object can be reused for a
field of another shape (``Each(SIGMA)`` for a tuple of σ). Errors name the class, the field, the
rule and the value: ``Fig3Config: schedule must be one of ('constant', 'cosine'), got 'step'``.
A value of the wrong type raises :class:`TypeError`; a value out of range raises
:class:`noisereg.errors.UserError` (a :class:`ValueError`), which the command line prints as one line.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg(Checked):
    ...     lr: float = 0.1
    ...     CONSTRAINTS = {"lr": Interval(0, low_open=True)}
    >>> Cfg(lr=-1.0)
    Traceback (most recent call last):
    ...
    noisereg.errors.UserError: Cfg: lr must be a finite number > 0, got -1.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from noisereg.errors import UserError


class Constraint:
    """A rule on one value: ``rule`` reads after "must be"; :meth:`problem` says what is wrong."""

    rule: str = ""

    def problem(self, value: Any) -> type[Exception] | None:
        """``None`` if ``value`` satisfies the rule, else the exception type to raise."""
        raise NotImplementedError


class OneOf(Constraint):
    """One of the given choices."""

    def __init__(self, *choices: Any) -> None:
        self.choices = choices
        self.rule = f"one of {choices}"

    def problem(self, value):
        return None if value in self.choices else UserError


class Interval(Constraint):
    """A finite real number (``integer``: an integer) with optional bounds ``low``/``high``."""

    def __init__(self, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False, integer: bool = False) -> None:
        self.low, self.high, self.low_open, self.high_open, self.integer = low, high, low_open, high_open, integer
        kind = "an integer" if integer else "a finite number"
        if low is not None and high is not None:
            self.rule = f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            self.rule = f"{kind} {'>' if low_open else '>='} {low}"
        elif high is not None:
            self.rule = f"{kind} {'<' if high_open else '<='} {high}"
        else:
            self.rule = kind

    def problem(self, value):
        want = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, want):
            return TypeError
        if not math.isfinite(value):
            return UserError
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return UserError
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return UserError
        return None


class OrNone(Constraint):
    """``None``, or a value that satisfies ``inner``."""

    def __init__(self, inner: Constraint) -> None:
        self.inner = inner
        self.rule = f"None or {inner.rule}"

    def problem(self, value):
        return None if value is None else self.inner.problem(value)


class Each(Constraint):
    """A tuple (or list) whose items all satisfy ``inner``; non-empty unless ``empty=True``; without
    repeated items with ``unique=True``."""

    def __init__(self, inner: Constraint, *, empty: bool = False, unique: bool = False) -> None:
        self.inner, self.empty, self.unique = inner, empty, unique
        self.rule = (f"a {'' if empty else 'non-empty '}list{' of distinct items' if unique else ''}, "
                     f"each item {inner.rule}")

    def problem(self, value):
        if not isinstance(value, (tuple, list)):
            return TypeError
        if not value and not self.empty:
            return UserError
        if self.unique and len(set(value)) != len(value):
            return UserError
        for item in value:
            p = self.inner.problem(item)
            if p is not None:
                return p
        return None


class IsBool(Constraint):
    """``True`` or ``False``."""

    rule = "a boolean"

    def problem(self, value):
        return None if isinstance(value, bool) else TypeError


class Satisfies(Constraint):
    """A value for which ``predicate`` holds (a string field, say); ``rule`` describes it."""

    def __init__(self, predicate: Callable[[Any], bool], rule: str, kind: type = object) -> None:
        self.predicate, self.rule, self.kind = predicate, rule, kind

    def problem(self, value):
        if not isinstance(value, self.kind):
            return TypeError
        return None if self.predicate(value) else UserError


@dataclass(frozen=True)
class Rule:
    """A rule between ``fields`` of one config: ``holds(cfg)`` must be true; ``rule`` describes it."""

    fields: tuple[str, ...]
    rule: str
    holds: Callable[[Any], bool]


def check(cfg: Any) -> None:
    """Check ``cfg`` against the ``CONSTRAINTS`` and ``RULES`` of its class and its bases.

    A subclass's constraint for a field replaces its base's. Raises the first violation.

    Raises:
        TypeError: a value of the wrong type. UserError: a value out of range, or a broken rule.
    """
    owner, seen = type(cfg).__name__, set()
    for klass in type(cfg).__mro__:
        for name, c in vars(klass).get("CONSTRAINTS", {}).items():
            if name in seen:
                continue
            seen.add(name)
            value = getattr(cfg, name)
            error = c.problem(value)
            if error is TypeError:
                raise TypeError(f"{owner}: {name} must be {c.rule}, got {type(value).__name__} {value!r}")
            if error is not None:
                raise error(f"{owner}: {name} must be {c.rule}, got {value!r}")
    for klass in type(cfg).__mro__:
        for r in vars(klass).get("RULES", ()):
            if not r.holds(cfg):
                got = ", ".join(f"{f}={getattr(cfg, f)!r}" for f in r.fields)
                raise UserError(f"{owner}: {r.rule}, got {got}")


class Checked:
    """Mixin of frozen dataclass configs: ``__post_init__`` runs :func:`check`."""

    CONSTRAINTS: ClassVar[dict[str, Constraint]] = {}
    RULES: ClassVar[tuple[Rule, ...]] = ()

    def __post_init__(self) -> None:
        check(self)
