"""Activation functions sigma of the unit phi(x; theta) = a * sigma(w . x + b)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..errors import ConfigError, did_you_mean


def _gaussian(z):
    return jnp.exp(-0.5 * z * z)


def _quadratic(z):
    return z * z


ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "arctan": jnp.arctan,
    "erf": jax.scipy.special.erf,
    "gaussian": _gaussian,
    "quadratic": _quadratic,
}


def scaled_activation(name: str, scale: float = 1.0) -> Callable:
    """sigma_s(z) = sigma(s z): the activation ``name`` at input scale ``s`` (> 0).

    The scale is a convention, not a new function class: sigma(s (w . x + b)) is the unit
    with parameters s w, s b. It exists so that a run can state the convention of a paper.
    The soft committee machines of Saad and Solla (1995) use g(z) = erf(z / sqrt 2), the
    activation ``erf`` at scale 1/sqrt 2 (then g'(0) = sqrt(2/pi), E[g(z)^2] = 1/3 for
    z ~ N(0, 1)); ``erf`` alone is erf(z).
    """
    act = ACTIVATIONS[name]
    if scale == 1.0:
        return act
    return lambda z: act(scale * z)


def check_activation_scale(scale, field: str = "model.activation_scale") -> float:
    """The input scale s of `scaled_activation`; a `ConfigError` unless s is finite and > 0."""
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"`{field}` must be a finite number > 0; got {scale!r}.")
    return float(scale)


def get_activation(name: str, field: str = "model.activation") -> Callable:
    """The activation named ``name``; a `ConfigError` listing valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"`{field}` must name a known activation; got {name!r}. "
            f"{did_you_mean(str(name), ACTIVATIONS)}"
        ) from None
