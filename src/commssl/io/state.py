"""A connection's states, and the moves between them (``TRANSITIONS``): the one table
``TLSConnection`` changes state by, so no front end compares states by order.

::

    PLAIN --attach--> HANDSHAKING --handshake done--> OPEN --detach--> DETACHING --> PLAIN
                           |  (a failed handshake)        |
                           +--------> FAILED <------------+  (never plaintext again)
    HANDSHAKING, OPEN --start_closing()--> CLOSING (asyncio's close: only its own
                                           shutdown steps run)
    any --close()--> CLOSED (terminal; resources freed by the last operation)
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet


class State(enum.Enum):
    """Where a connection is; the value is the name its ``repr`` shows."""

    PLAIN = "plain"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"
    DETACHING = "detaching"
    FAILED = "failed"
    CLOSED = "closed"

    # Members are singletons compared by identity: hash them by identity too, in C.
    # Enum's own __hash__ is a Python call (hash of the name), several per connection.
    __hash__ = object.__hash__

    @property
    def has_tls(self) -> bool:
        """An SSL is attached and usable (handshaking or open)."""
        return self is State.HANDSHAKING or self is State.OPEN

    @property
    def usable(self) -> bool:
        """A user operation may start (plain, handshaking or open); in the other states
        the stream is closing, closed, failed or being detached, and reads are at their end."""
        return self is State.PLAIN or self is State.HANDSHAKING or self is State.OPEN


PLAIN, HANDSHAKING, OPEN, CLOSING, DETACHING, FAILED, CLOSED = State

TRANSITIONS: Dict[State, FrozenSet[State]] = {
    PLAIN: frozenset({HANDSHAKING, CLOSED}),
    HANDSHAKING: frozenset({OPEN, FAILED, CLOSING, DETACHING, CLOSED}),
    OPEN: frozenset({FAILED, CLOSING, DETACHING, CLOSED}),
    CLOSING: frozenset({CLOSED}),
    DETACHING: frozenset({PLAIN, CLOSED}),
    FAILED: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


def check_move(current: State, new: State) -> State:
    """``new``, when the table allows moving there from ``current`` (else a bug: AssertionError)."""
    if new not in TRANSITIONS[current]:
        raise AssertionError(f"connection state {current.value} -> {new.value} is not a transition")
    return new
