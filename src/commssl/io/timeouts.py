"""Timeouts: the one argument check every entry point uses, and deadlines as the C loops
take them (milliseconds, -1 for none, never early)."""

from __future__ import annotations

import math
import time
from typing import Optional

#: The largest timeout the C loops take (an int of milliseconds).
MAX_TIMEOUT_MS = 2**31 - 1


def timeout_arg(value: object, argument: str) -> Optional[float]:
    """A timeout argument as seconds (``None``: no limit), or the documented error:
    ``TypeError`` for a non-number, ``ValueError`` for nan, infinities, negatives
    and anything from 2**31 ms on."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number of seconds or None, not {type(value).__name__}")
    if not 0 <= value < (MAX_TIMEOUT_MS + 1) / 1000:  # also refuses nan
        raise ValueError(f"{argument} must be None or a finite number of seconds >= 0 and below "
                         f"{(MAX_TIMEOUT_MS + 1) // 1000} (2**31 ms), not {value!r}")
    return float(value)


def deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def ms_left(when: Optional[float]) -> int:
    """Milliseconds to ``when`` for the C loops (-1: no limit), rounded up: never early."""
    if when is None:
        return -1
    return max(0, math.ceil((when - time.monotonic()) * 1000))
