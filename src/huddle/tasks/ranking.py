"""Fractional ranks: a move writes one row; the column is renumbered only when keys grow long.

Ranks are base-62 strings from the ``fractional-indexing`` package, ordered by plain
byte comparison. A key strictly between any two keys always exists, so moving a card
only rewrites that card. Repeated inserts at the same spot make keys longer; past
``MAX_RANK_LENGTH`` the column is rebalanced to short, evenly spaced keys (rare: it
takes dozens of inserts into the very same gap).
"""

from __future__ import annotations

from fractional_indexing import generate_key_between, generate_n_keys_between

MAX_RANK_LENGTH = 48


def between(lower: str | None, upper: str | None) -> str:
    """A rank after ``lower`` and before ``upper`` (None: open end)."""
    return str(generate_key_between(lower, upper))


def evenly(count: int) -> list[str]:
    """``count`` short increasing ranks, for renumbering a whole column."""
    return [str(k) for k in generate_n_keys_between(None, None, count)] if count else []


def after(last: str | None, count: int) -> list[str]:
    """``count`` increasing ranks after ``last`` (appending several cards at once)."""
    return [str(k) for k in generate_n_keys_between(last, None, count)] if count else []


def too_long(rank: str) -> bool:
    return len(rank) > MAX_RANK_LENGTH
