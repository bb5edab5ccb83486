"""Norms of two-layer networks: the path norm (docs/theory.md section 16)."""

from __future__ import annotations

import jax.numpy as jnp

from .._typing import Particles, Scalar


def path_norm(model, theta: Particles) -> Scalar:
    r"""Path norm of a two-layer network (docs/theory.md section 16).

        ||Theta||_P = (1/m) sum_j |a_j| (||w_j||_1 + |b_j|)          (mean_field)

    For a general scaling gamma the network is f = sum_j c_j sigma(w_j . x + b_j) with
    c_j = m^(-gamma) a_j, and the path norm of that function is
    m^(-gamma) sum_j |a_j| (||w_j||_1 + |b_j|), which is what is returned (it equals the
    mean_field formula when gamma = 1). Units without output weights (``train_output``
    false) count a_j = 1; units without bias count b_j = 0.

    The path norm bounds the Barron norm of the function it represents (E, Ma and Wu
    2019, Theorem 5, stated as Theorem 2.2 of H. Yang's overview "Mean-field analysis of
    neural network": ||f||_B <= sup_N ||Theta_N||_P) and, for ReLU units,
    |f(x)| <= ||Theta||_P max(1, ||x||_inf) because |relu(z)| <= |z| and
    |w . x + b| <= (||w||_1 + |b|) max(1, ||x||_inf). It is invariant under permutations
    of the particles and under the ReLU rescaling (a, w, b) -> (c a, w / c, b / c), c > 0,
    which leaves f unchanged.

    Args:
        model: a `TwoLayer` (anything with ``split`` and ``output_scale``).
        theta: particles (m, D), rows (a, w, b) in the model's layout.

    Returns:
        The path norm, a scalar of theta's dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn.models import TwoLayer
        >>> net = TwoLayer(d=2, activation="relu", scaling="mean_field", bias=True)
        >>> theta = jnp.array([[2.0, 1.0, -1.0, 0.5], [-1.0, 0.0, 3.0, -1.0]])  # (a, w, b)
        >>> float(path_norm(net, theta))  # (2 * 2.5 + 1 * 4) / 2
        4.5

    References:
        E, Ma and Wu, "Barron spaces and the compositional function spaces for neural
        network models" (2019), Theorems 4-5 (Theorems 2.1-2.2 and section 2.1 of H. Yang,
        "Mean-field analysis of neural network: an overview").
    """
    theta = jnp.asarray(theta)
    a, w, b = model.split(theta)
    per_unit = jnp.abs(a) * (jnp.sum(jnp.abs(w), axis=-1) + jnp.abs(b))
    return model.output_scale(theta.shape[0]) * jnp.sum(per_unit)


__all__ = ["path_norm"]
