"""Which parametrized cases run in the default tier and which only in the slow tier.

A cross product of parameters (8 activations x 4 layouts) compiles one program per case;
the default tier runs a covering set of it, every value of every axis at least once, and
the slow tier (``make test-slow``) the rest, so that the whole product still runs in CI.
"""

import itertools

import pytest


def covering(*axes):
    """The cross product of ``axes`` as pytest params: the cases i = 0..max(len) - 1 taking
    value ``i mod len(axis)`` of every axis run by default, every other case is marked
    ``slow``.

    >>> [len(c.marks) for c in covering(["a", "b", "c"], [1, 2])]
    [0, 1, 1, 0, 0, 1]
    """
    n = max(len(a) for a in axes)
    cover = {tuple(i % len(a) for a in axes) for i in range(n)}
    cases = []
    for idx in itertools.product(*(range(len(a)) for a in axes)):
        values = tuple(a[i] for a, i in zip(axes, idx, strict=True))
        cases.append(pytest.param(*values, marks=() if idx in cover else (pytest.mark.slow,)))
    return cases


def first_by_default(values):
    """``values`` as pytest params: the first runs by default, the others are slow."""
    return [v if i == 0 else pytest.param(v, marks=pytest.mark.slow) for i, v in enumerate(values)]
