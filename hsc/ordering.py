"""Stable sort permutations of float64 arrays by one vectorised integer sort (the hot sorts of hsc).

numpy's ``argsort(kind="stable")`` is a merge sort that is not vectorised; its default introsort is, but
unstable. :func:`stable_order` returns exactly the stable permutation at about half the cost of the unstable
argsort, by sorting plain 64-bit integers that carry both the value's order and the sample index.
"""

from __future__ import annotations

import numpy as np

_MAX_INDEX_BITS = 40  # beyond 2^40 samples the truncated keys would be too coarse to be worth it


def stable_order(values: np.ndarray, *, descending: bool = False) -> np.ndarray:
    """``values: (N,)`` float64 without NaN -> ``(N,) int64`` permutation sorting them (ascending, or descending),
    equal values in index order: exactly ``np.argsort(values, kind="stable")`` (``np.argsort(-values,
    kind="stable")`` when descending). ±0.0 compare equal; ±inf are allowed.

    Each value becomes a 64-bit unsigned key that sorts in the requested value order; its lowest b bits
    (b = bits of N − 1) are replaced by the sample index, and numpy's vectorised sort of these integers
    yields the permutation. Equal values have equal keys, so they come out in index order. Values whose keys
    differ only in those b bits (within about 2^(b−52) relative of each other) may come out of order: the
    groups that hold them are re-sorted by (value, index), usually none.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    bits = max(1, (n - 1).bit_length())
    if bits > _MAX_INDEX_BITS:
        return np.argsort(-v if descending else v, kind="stable")
    raw = v.view(np.uint64)
    # descending keys: non-negative values by decreasing bit pattern, then negative ones by increasing pattern;
    # −0.0 (bit pattern 2^63) maps to the key of +0.0 (2^63 − 1), as equal values must. Ascending: complement.
    key = np.subtract(np.uint64(2**63 - 1), raw)
    np.subtract(raw, np.uint64(1), out=key, where=np.signbit(v))
    if not descending:
        np.invert(key, out=key)
    low = np.uint64((1 << bits) - 1)
    key &= ~low
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    order = np.bitwise_and(key, low).view(np.int64)
    key >>= np.uint64(bits)
    same_group = key[1:] == key[:-1]
    if not same_group.any():
        return order
    ranked = v[order]
    mixed = same_group & (ranked[1:] != ranked[:-1])  # neighbours with one truncated key but different values
    if not mixed.any():
        return order
    group_id = np.zeros(n, dtype=np.int64)
    np.cumsum(~same_group, out=group_id[1:])
    redo = np.flatnonzero(np.isin(group_id, group_id[1:][mixed]))  # whole groups, each contiguous
    members = order[redo]
    by_value = -ranked[redo] if descending else ranked[redo]
    order[redo] = members[np.lexsort((members, by_value, group_id[redo]))]
    return order
