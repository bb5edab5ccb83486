r"""The energy of a grid density and its first variation, from the particles' objective.

A density rho on the grid (`mfnn.pde.grid.Grid`) is the weighted measure
mu = sum_i m_i delta_{theta_i} on the cell centres theta_i, m_i = rho_i |h| (the midpoint
rule, second order in h). The network is f(x; rho) = sum_i m_i phi(x; theta_i) (mean-field
scaling, f = int phi d rho) and, for the square loss,

    R(rho)   = (1/2) sum_k w_k (f(x_k; rho) - y_k)^2,
    Phi(theta) = dE/drho (theta)
               = sum_k w_k (f(x_k; rho) - y_k) phi(x_k; theta) + (lambda/2) |theta|^2,

with (x_k, y_k, w_k) the objective's sample: the data set (w_k = 1/n), the quadrature rule
of a population risk, or the fixed evaluation sample of a Monte Carlo population risk. The
feature matrix A_ki = phi(x_k; theta_i) is computed once (the cells do not move), so a
first variation costs two matrix-vector products, O(C K) for C cells and K nodes, never
O(C^2) (`SampledEnergy`). A closed-form population risk (ReLU/erf kernels) has no nodes:
there R = R0 + int V drho + (1/2) int int U drho drho with the C x C matrix U precomputed,
O(C^2) per step (`KernelEnergy`, refused above `MAX_KERNEL_CELLS` cells).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp

from .._typing import Array, Float, Scalar
from ..errors import ConfigError
from ..models.two_layer import TwoLayer
from ..objectives import EmpiricalRisk, PopulationRisk, ZeroRisk
from ..objectives.base import AbstractObjective
from .grid import Grid

MAX_KERNEL_CELLS = 8192  # a C x C kernel matrix of float64: 512 MiB at this size


class AbstractGridEnergy(eqx.Module):
    """E(rho) = R(rho) + (lambda/2) int |theta|^2 drho for cell masses m (C,), and
    Phi = dE/drho at the cell centres."""

    confinement: eqx.AbstractVar[Float[Array, " C"]]  # (lambda/2) |theta_i|^2

    @abc.abstractmethod
    def risk(self, mass: Float[Array, " C"]) -> Scalar:
        """R(rho)."""

    @abc.abstractmethod
    def risk_variation(self, mass: Float[Array, " C"]) -> Float[Array, " C"]:
        """dR/drho at the cell centres."""

    def energy(self, mass: Float[Array, " C"]) -> Scalar:
        """E = R + sum_i m_i (lambda/2) |theta_i|^2."""
        return self.risk(mass) + self.confinement @ mass

    def first_variation(self, mass: Float[Array, " C"]) -> Float[Array, " C"]:
        """Phi(theta_i) = dR/drho(theta_i) + (lambda/2) |theta_i|^2."""
        return self.risk_variation(mass) + self.confinement


class SampledEnergy(AbstractGridEnergy):
    """The square loss on a weighted sample (x_k, y_k, w_k): data, quadrature nodes or a
    Monte Carlo evaluation sample. ``features`` is A (K, C), A_ki = phi(x_k; theta_i)."""

    features: Float[Array, "K C"]
    y: Float[Array, " K"]
    weights: Float[Array, " K"]
    confinement: Float[Array, " C"]

    def output(self, mass: Float[Array, " C"]) -> Float[Array, " K"]:
        """f(x_k; rho) = sum_i A_ki m_i."""
        return self.features @ mass

    def risk(self, mass):
        r = self.output(mass) - self.y
        return 0.5 * jnp.sum(self.weights * r * r)

    def risk_variation(self, mass):
        return (self.weights * (self.output(mass) - self.y)) @ self.features


class KernelEnergy(AbstractGridEnergy):
    """R = R0 + V . m + (1/2) m . U m with the closed-form kernel U (C, C) and potential V."""

    kernel: Float[Array, "C C"]
    potential: Float[Array, " C"]
    r0: Array
    confinement: Float[Array, " C"]

    def risk(self, mass):
        return self.r0 + self.potential @ mass + 0.5 * mass @ (self.kernel @ mass)

    def risk_variation(self, mass):
        return self.potential + self.kernel @ mass


def grid_energy(objective: AbstractObjective, model, grid: Grid, dtype=jnp.float64):
    """The grid energy of ``objective`` for a two-layer ``model`` whose particle rows are
    the grid's coordinates (``model.dim == grid.dim``; mean-field scaling).

    Raises `ConfigError` for a model or objective the grid cannot represent."""
    if not isinstance(model, TwoLayer):
        raise ConfigError(
            f"`dynamics.kind: pde` solves the mean-field PDE of a two-layer network; got a "
            f"{type(model).__name__} (`model.kind: two_layer`)."
        )
    if not model.scaling.mean_field:
        raise ConfigError(
            "`dynamics.kind: pde` is the mean-field limit: `model.scaling` must be mean_field "
            f"with `model.alpha` 1; got gamma = {model.scaling.gamma}, alpha = "
            f"{model.scaling.alpha}."
        )
    if model.dim != grid.dim:
        raise ConfigError(
            f"a particle of this model has D = {model.dim} coordinates "
            f"({', '.join(model.present_blocks)} with input dimension {model.d}) but the grid "
            f"has {grid.dim} axes; a grid holds D = 1 or 2: e.g. w in R (`model.d: 1`, "
            "`bias: false`, `train_output: false`), (w, b) or (a, w) in R^2."
        )
    centers = grid.centers(dtype)
    l2 = jnp.asarray(objective.l2, dtype)
    confinement = 0.5 * l2 * jnp.sum(centers**2, axis=1)
    if isinstance(objective, ZeroRisk):
        empty = jnp.zeros((0,), dtype)
        return SampledEnergy(
            features=jnp.zeros((0, grid.size), dtype),
            y=empty,
            weights=empty,
            confinement=confinement,
        )
    if isinstance(objective, EmpiricalRisk):
        x, y = objective.data.x, objective.data.y
        weights = jnp.full((x.shape[0],), 1.0 / x.shape[0], dtype)
    elif isinstance(objective, PopulationRisk) and objective.method != "closed_form":
        x, y, weights = objective.x, objective.y, objective.weights
    elif isinstance(objective, PopulationRisk):
        if grid.size > MAX_KERNEL_CELLS:
            raise ConfigError(
                f"`data.population.method: closed_form` on the grid needs a {grid.size} x "
                f"{grid.size} kernel matrix (more than {MAX_KERNEL_CELLS} cells): use "
                "`method: quadrature` (O(cells x nodes) per step) or fewer cells."
            )
        kernel = objective.interaction(model, centers, centers)
        potential = objective.potential(model, centers)
        r0 = objective.teacher_energy(dtype)
        return KernelEnergy(
            kernel=kernel,
            potential=potential,
            r0=jnp.asarray(r0, dtype),
            confinement=confinement,
        )
    else:
        raise ConfigError(
            f"`dynamics.kind: pde` takes an empirical or population square loss (or none); got "
            f"{type(objective).__name__}."
        )
    if y.ndim != 1:
        raise ConfigError(f"the grid solver needs scalar targets y (n,); got shape {y.shape}.")
    features = model.features(centers, x.astype(dtype))
    return SampledEnergy(
        features=features.astype(dtype),
        y=y.astype(dtype),
        weights=weights.astype(dtype),
        confinement=confinement,
    )
