"""Optimal transport between discrete measures (W2), for diagnostics on the host."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from ..errors import MfnnError


def wasserstein2(x: np.ndarray, p: np.ndarray, y: np.ndarray, q: np.ndarray) -> float:
    r"""W2 between mu = sum_i p_i delta_{x_i} and nu = sum_j q_j delta_{y_j}.

        W2(mu, nu)^2 = min_{pi >= 0, pi 1 = p, pi^T 1 = q} sum_ij pi_ij |x_i - y_j|^2,

    solved exactly as a linear program (HiGHS); for n x k points with k small (a teacher
    with a few atoms) this is fast up to n ~ 1e4.

    Args:
        x: (n, D) support of mu; p: (n,) weights >= 0 summing to 1.
        y: (k, D) support of nu; q: (k,) weights >= 0 summing to 1.
    """
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    p, q = np.asarray(p, float), np.asarray(q, float)
    if x.shape[1] != y.shape[1] or p.shape != (x.shape[0],) or q.shape != (y.shape[0],):
        raise MfnnError(
            f"wasserstein2: supports (n, D), (k, D) and weights (n,), (k,) must agree; got "
            f"x {x.shape}, p {p.shape}, y {y.shape}, q {q.shape}."
        )
    for name, w in (("p", p), ("q", q)):
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-9):
            raise MfnnError(f"wasserstein2: `{name}` must be >= 0 and sum to 1; got sum {w.sum()}.")
    n, k = len(p), len(q)
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).ravel()
    rows = np.kron(np.eye(n), np.ones((1, k)))  # sum_j pi_ij = p_i
    cols = np.kron(np.ones((1, n)), np.eye(k))  # sum_i pi_ij = q_j
    a_eq = np.vstack([rows, cols])[:-1]  # one constraint is redundant (both sum to 1)
    b_eq = np.concatenate([p, q])[:-1]
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        raise MfnnError(f"wasserstein2: the transport LP failed ({res.message}).")
    return float(np.sqrt(max(res.fun, 0.0)))
