"""Activation functions sigma of the unit phi(x; theta) = a * sigma(w . x + b)."""

from __future__ import annotations

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


def get_activation(name: str, field: str = "model.activation") -> Callable:
    """The activation named ``name``; a `ConfigError` listing valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"`{field}` must name a known activation; got {name!r}. "
            f"{did_you_mean(str(name), ACTIVATIONS)}"
        ) from None
