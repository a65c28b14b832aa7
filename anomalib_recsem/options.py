"""Checks of constructor options, shared by the model and the defect synthesis.

Each check raises ``ValueError`` naming the option, the values it accepts and the value given,
at construction time: from Python a typo such as ``memory_skip="no"`` would otherwise be truthy
and train the wrong model without a word, and a width of 0 would only fail deep inside torch.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch

__all__ = ["check_choice", "check_flag", "check_integer", "check_number"]


def check_choice(name: str, value: object, accepted: Sequence[object]) -> None:
    """Raise unless ``value`` is one of ``accepted``.

    Args:
        name: Option name, as the user writes it.
        value: Value given.
        accepted: The accepted values.

    Raises:
        ValueError: If ``value`` is not in ``accepted``.
    """
    if value not in accepted:
        msg = f"{name} must be one of {tuple(accepted)}, got {value!r}."
        raise ValueError(msg)


def check_flag(name: str, value: object) -> bool:
    """Raise unless ``value`` is ``True`` or ``False``.

    Args:
        name: Option name.
        value: Value given.

    Returns:
        bool: ``value`` as a Python bool.

    Raises:
        ValueError: If ``value`` is not a bool or NumPy bool (strings such as ``"no"`` are truthy).
    """
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{name} must be True or False, got {value!r}."
        raise ValueError(msg)  # noqa: TRY004  a bad option value, as for the other checks
    return bool(value)


def check_integer(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """Raise unless ``value`` is an integer in ``[minimum, maximum]``.

    Args:
        name: Option name.
        value: Value given.
        minimum: Smallest accepted value.
        maximum: Largest accepted value (``None``: no limit).

    Returns:
        int: ``value``.

    Raises:
        ValueError: If ``value`` is a bool, not an integer, or out of range.
    """
    # Python, NumPy and 0-d torch integers all have __index__; floats are refused by it.
    try:
        integer = None if _never_a_number(value) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        integer = None
    if integer is None or integer < minimum or (maximum is not None and integer > maximum):
        accepted = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        msg = f"{name} must be an integer {accepted}, got {value!r}."
        raise ValueError(msg)
    return integer


def check_number(name: str, value: object, minimum: float, *, strict: bool = False) -> float:
    """Raise unless ``value`` is a finite real number ``>= minimum`` (``> minimum`` if ``strict``).

    Args:
        name: Option name.
        value: Value given.
        minimum: Lower bound.
        strict: Exclude ``minimum`` itself.

    Returns:
        float: ``value``.

    Raises:
        ValueError: If ``value`` is a bool, not real, not finite, or below the bound.
    """
    number = _real(value)
    if number is None or not math.isfinite(number) or number < minimum or (strict and number == minimum):
        msg = f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value!r}."
        raise ValueError(msg)
    return number


def _real(value: object) -> float | None:
    """``value`` as a float if it is a real number (Python, NumPy or a 0-d torch tensor), not a bool; else None."""
    if _never_a_number(value):
        return None
    if isinstance(value, Real) or (isinstance(value, torch.Tensor) and not value.is_complex()):
        return float(value)
    return None


def _never_a_number(value: object) -> bool:
    """Bools (Python, NumPy or torch) and torch tensors of any shape but 0-d.

    Both convert to numbers (``True`` is 1, and a one-element tensor has ``__index__`` and
    ``__float__``), but a numeric option given one is a mistake.
    """
    if isinstance(value, torch.Tensor):
        return value.ndim != 0 or value.dtype == torch.bool
    return isinstance(value, (bool, np.bool_))
