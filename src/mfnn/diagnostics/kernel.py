r"""The tangent kernel of a particle network and how much it changes (docs/theory.md s. 15).

For f(x) = m^(-gamma) sum_j phi(x; theta_j) the gradient with respect to particle j is
m^(-gamma) grad phi(x; theta_j), so the tangent kernel is

    K(x, x') = sum_j grad_theta_j f(x) . grad_theta_j f(x')
             = m^(-2 gamma) sum_j grad phi(x; theta_j) . grad phi(x'; theta_j),

the dot products running over the trainable coordinates only (``model.trainable``).
Under the mean-field gradient flow (`mfnn.models.scaling`), d theta_j/dt = -m^(2 gamma - 1) grad_j R
with R = (1/(2n)) sum_i (f(x_i) - y_i)^2, the function moves by

    df(x)/dt = -m^(2 gamma - 1) (1/n) sum_i K(x, x_i) (f(x_i) - y_i),

and m^(2 gamma - 1) K = (1/m) sum_j grad phi(x; theta_j) . grad phi(x'; theta_j) is an
average over particles: O(1) in every scaling, which is why f moves O(1) in O(1) time.
Computed with ``jax.jvp`` of the model's features (neural-tangents does not import with
current JAX, and a jvp per trainable coordinate is all a sum of units needs).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float, Inputs, Particles


def feature_gradients(model, theta: Particles, x: Inputs) -> Float[Array, "C n m"]:
    r"""G_c[i, j] = d phi(x_i; theta_j) / d theta_{j,c} for each trainable column c.

    Column j of ``model.features(theta, x)`` depends on particle j only (f is a sum of
    units), so one ``jax.jvp`` with the tangent e_c on every row gives, for all j at once,
    the derivative of unit j along its own coordinate c: C jvps of cost O(n m) each,
    C = number of trainable coordinates, instead of a Jacobian of size n x m x D.

    Args:
        model: a particle model with ``features(theta, x) -> (n, m)``.
        theta: (m, D) particles.
        x: (n, d) inputs.

    Returns:
        (C, n, m); C = 0 when nothing is trainable.
    """
    cols = [int(c) for c in model.trainable_columns()]
    if not cols:
        return jnp.zeros((0, x.shape[0], theta.shape[0]), theta.dtype)
    tangents = jnp.zeros((len(cols), *theta.shape), theta.dtype)
    tangents = tangents.at[jnp.arange(len(cols)), :, jnp.asarray(cols)].set(1)

    def along(tangent):
        return jax.jvp(lambda th: model.features(th, x), (theta,), (tangent,))[1]

    return jax.vmap(along)(tangents)


def tangent_kernel(
    model, theta: Particles, x: Inputs, x2: Inputs | None = None
) -> Float[Array, "n n2"]:
    r"""The tangent kernel K(x, x') = grad_theta f(x) . grad_theta f(x').

        K(x, x') = m^(-2 gamma) sum_j sum_{c trainable} d_c phi(x; theta_j) d_c phi(x'; theta_j)

    (gamma of ``model.output_scale``: 1 mean_field, 1/2 ntk). Frozen blocks
    (``model.trainable``) do not count: they do not move, so they do not move f.

    Time scaling (`mfnn.models.scaling`): with the velocity d theta_j/dt =
    -s grad_j R, s = ``model.velocity_scale(m)`` = m^(2 gamma - 1), and the empirical risk
    R = (1/(2n)) sum_i (f(x_i) - y_i)^2, the training outputs move by

        df/dt = -s K(X, X) (f(X) - y) / n        (X the n training inputs),

    and s K = (1/m) sum_j grad phi(x; theta_j) . grad phi(x'; theta_j) is O(1) in every
    scaling. Under ntk (s = 1) K itself is the O(1) neural tangent kernel; under
    mean_field K = O(1/m) and the factor s = m restores it.

    Args:
        model: a particle model whose ``predict`` is ``output_scale(m) * features.sum(1)``
            (`mfnn.TwoLayer`).
        theta: (m, D) particles.
        x: (n, d) inputs.
        x2: (n2, d) inputs; None means x (then K is symmetric positive semi-definite).

    Returns:
        K, (n, n2).

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn import TwoLayer
        >>> net = TwoLayer(d=1, activation="relu", scaling="mean_field", bias=False)
        >>> theta = jnp.array([[2.0, 1.0]])  # one particle (a, w) = (2, 1)
        >>> x = jnp.array([[1.0], [2.0]])
        >>> tangent_kernel(net, theta, x).tolist()  # grad phi = (relu(w x), a x) = (x, 2x)
        [[5.0, 10.0], [10.0, 20.0]]
        >>> frozen_a = TwoLayer(d=1, activation="relu", bias=False, trainable=("w",))
        >>> tangent_kernel(frozen_a, theta, x).tolist()
        [[4.0, 8.0], [8.0, 16.0]]

    References:
        Jacot, Gabriel, Hongler, "Neural Tangent Kernel" (NeurIPS 2018), eq. (2);
        Chizat, Oyallon, Bach, "On Lazy Training in Differentiable Programming" (NeurIPS
        2019).
    """
    return _tangent_kernel(model, theta, x, x2)


@eqx.filter_jit
def _tangent_kernel(model, theta, x, x2):
    # one compiled program per (model, shapes): the C jvps and the contraction fuse
    g = feature_gradients(model, theta, x)
    g2 = g if x2 is None else feature_gradients(model, theta, x2)
    scale = model.output_scale(theta.shape[0]) ** 2
    return scale * jnp.einsum("cim,ckm->ik", g, g2)


def kernel_change(model, theta0: Particles, theta: Particles, x: Inputs) -> float:
    r"""Relative change of the tangent kernel on the inputs x between theta0 and theta.

        ||K_theta(X, X) - K_theta0(X, X)||_F / ||K_theta0(X, X)||_F

    Scale-free (the factor m^(-2 gamma) cancels). After training for a time T = O(1) with
    the time scaling of `mfnn.models.scaling`, each particle moves O(m^(gamma - 1)) and the
    change is

    - Theta(m^(2 (gamma - 1))) from a start symmetric under a -> -a (paired particles
      (a, w, b), (-a, w, b), or i.i.d. output weights of a symmetric law): the first-order
      term of the change is odd in a and averages out, so ntk (gamma = 1/2) changes the
      kernel by Theta(1/m) (measured slope -1.0 in `lazy_vs_rich`);
    - only O(m^(gamma - 1)) without that symmetry, i.e. O(m^-1/2) under ntk (the general
      bound of Chizat, Oyallon and Bach 2019; a skewed start measures a slope of about
      -0.6 to -0.7 at the experiment's widths);
    - Theta(1) under mean_field (gamma = 1) either way: the features move (rich training).

    See docs/theory.md section 15 and the `lazy_vs_rich` experiment.

    Args:
        model: as in `tangent_kernel`.
        theta0, theta: (m, D) particles (start and end).
        x: (n, d) inputs.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn import TwoLayer
        >>> net = TwoLayer(d=1, activation="relu", bias=False)
        >>> x = jnp.array([[1.0], [2.0]])
        >>> # one particle, K = (a^2 + w^2) x x': doubling (a, w) multiplies K by 4
        >>> round(kernel_change(net, jnp.array([[1.0, 1.0]]), jnp.array([[2.0, 2.0]]), x), 12)
        3.0
    """
    k0 = np.asarray(tangent_kernel(model, theta0, x))
    k = np.asarray(tangent_kernel(model, theta, x))
    return float(np.linalg.norm(k - k0) / np.linalg.norm(k0))
