"""Diagnostics of two-layer networks: ReLU breakpoints and particle movement."""

from __future__ import annotations

import numpy as np


def relative_movement(theta, theta0) -> float:
    """|theta - theta_0|_F / |theta_0|_F: O(m^(gamma - 1)) after an O(1) time (docs/theory.md
    section 15)."""
    theta, theta0 = np.asarray(theta), np.asarray(theta0)
    return float(np.linalg.norm(theta - theta0) / np.linalg.norm(theta0))


def breakpoints(model, theta) -> tuple[np.ndarray, np.ndarray]:
    """ReLU breakpoints and kink sizes of a 1-D two-layer network.

    Unit j of f(x) = m^(-gamma) sum_j a_j relu(w_j x + b_j) bends at x_j = -b_j / w_j, where
    the slope of f jumps by m^(-gamma) |a_j w_j|. Returns (x_j, |a_j w_j|) for neurons with
    w_j != 0; the kink size is the weight a breakpoint carries in f.
    """
    if model.d != 1 or not model.bias:
        raise ValueError("breakpoints need a 1-D input (`model.d` = 1) and `model.bias: true`.")
    a, w, b = (np.asarray(v) for v in model.split(np.asarray(theta)))
    w = w[:, 0]
    nz = w != 0
    return -b[nz] / w[nz], np.abs(a[nz] * w[nz])


def breakpoint_concentration(
    model, theta, radius: float = 0.25, significance: float = 0.1
) -> float:
    r"""Fraction of significant neurons whose ReLU breakpoint lies within ``radius`` of 0.

        C_r(mu) = #{j in S : |b_j / w_j| < r} / #S,
        S = {j : |a_j w_j| >= significance * mean_k |a_k w_k|}

    A neuron is significant when its kink size |a_j w_j| (its effect on f) is at least
    ``significance`` times the mean kink size, so neurons whose output weight has died
    out do not count. For sign(x) on [-1, 1], mean_field training drives C_r towards 1
    (features move to the jump); ntk leaves it near its initial value (the `sign`
    experiment; lazy training in the sense of Chizat, Oyallon and Bach 2019).
    """
    x, mass = breakpoints(model, theta)
    sig = mass >= significance * mass.mean()
    return float(np.mean(np.abs(x[sig]) < radius)) if sig.any() else 0.0
