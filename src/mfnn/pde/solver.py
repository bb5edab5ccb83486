r"""Finite-volume solver of the mean-field PDE on a grid (the Eulerian view of the flow).

    d rho/dt = div(rho grad Phi[rho]) + D Laplacian rho - alpha (Phi[rho] - <Phi[rho]>_rho) rho,

Phi[rho] = dE/drho the first variation of E = R + (lambda/2) int |theta|^2 (`mfnn.pde.energy`),
D = 1/beta the temperature of mean-field Langevin dynamics (Mei, Montanari and Nguyen 2018)
and alpha the birth-death rate (Rotskoff, Jelassi, Bruna and Vanden-Eijnden 2019). It is the
Wasserstein (+ Fisher-Rao when alpha > 0) gradient flow of the free energy

    F(rho) = E(rho) + D int rho log rho.

Space (cell averages rho_i on `mfnn.pde.grid.Grid`): on the face between cells i and i+1
along axis k the velocity is u = -(Phi_{i+1} - Phi_i) / h_k and the flux

    F_{i+1/2} = u^+ rho^L_{i+1/2} + u^- rho^R_{i+1/2} - D (rho_{i+1} - rho_i) / h_k,

with rho^L = rho_i, rho^R = rho_{i+1} (``upwind``, first order) or the minmod-limited
linear reconstruction rho^L = rho_i + s_i / 2, rho^R = rho_{i+1} - s_{i+1} / 2,
s_i = minmod(rho_i - rho_{i-1}, rho_{i+1} - rho_i) (``muscl``, second order where rho is
smooth; van Leer 1979). d rho_i/dt = -(F_{i+1/2} - F_{i-1/2}) / h_k summed over axes: a
flux form, so the mass sum_i rho_i |h| changes only through the boundary faces, whose flux
is zero (no-flux: the reflecting boundary of a bounded domain, or the truncation of R^D,
which must then hold the mass away from its edge). The reaction term keeps the mass too,
since <Phi> = sum Phi_i rho_i / sum rho_i. This is the scheme of Carrillo, Chertock and
Huang (2015) for nonlocal gradient flows with the diffusion taken by central differences.

Time (``scheme``):

- ``explicit``: forward Euler (``upwind``) or Heun's SSP-RK2 (``muscl``, second order in
  time; Shu and Osher 1988) of the whole right-hand side;
- ``imex``: the same for transport and reaction, then the diffusion implicitly,
  (I - dt D Laplacian_h) rho^{n+1} = rho^*, solved exactly by the discrete cosine
  transform (DCT-II diagonalises the cell-centred Neumann Laplacian, eigenvalues
  -4 sin^2(pi j / (2 n_k)) / h_k^2): no dt <= h^2 / (2 D) limit, first order in time.
  A box only (a 2-D ball's staircase has no fast transform).

Why these and not an adaptive ODE solver (diffrax) on the semi-discrete system: what the
grid must keep exactly, mass and positivity, is a property of strong-stability-preserving
steps under the cfl bound below (each stage a convex combination of forward-Euler steps),
which an embedded Runge-Kutta pair with error control does not promise; and the stiff part,
the diffusion, is linear with a known eigenbasis, so it is solved exactly by the transform
instead of by Newton iterations of an implicit solver.

Stability (positivity, hence L1 stability): a forward-Euler stage keeps rho >= 0 when
every cell loses at most its mass,

    dt max_i [sum_k (out_{i,k} / h_k + 2 D / h_k^2) + alpha |Phi_i - <Phi>|] <= 1,

out_{i,k} = u_R^+ + u_L^- (upwind) or 2 max(u_R^+, u_L^-) (muscl) from the velocities of
the cell's two faces along axis k, the diffusion term absent under ``imex``. `FokkerPlanck.cfl`
is the left side; a run refuses a dt whose cfl exceeds 1 at the start and stops if it
exceeds 1 later (the velocity grows as rho moves).

Energy identity: for the semi-discrete system d/dt F(rho) = sum_i xi_i (d rho_i/dt) |h|
exactly, xi = Phi + D log rho, so `dissipation` = -sum_i xi_i L(rho)_i |h| (L the
right-hand side) is -dF/dt of the grid system; summation by parts makes it
sum over faces of -F_{i+1/2} (xi_{i+1} - xi_i) / h_k |h| + alpha sum_i (Phi_i - <Phi>)^2 rho_i |h|,
the discrete int rho |grad xi|^2 + alpha int (Phi - <Phi>)^2 rho.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.fft import dctn, idctn

from .._typing import Array, Float, Scalar
from ..errors import ConfigError
from .energy import AbstractGridEnergy
from .grid import Grid

FLUXES = ("upwind", "muscl")
SCHEMES = ("explicit", "imex")
TINY = 1e-300  # log of a density clipped here (rho log rho -> 0 at rho = 0)


def _minmod(a, b):
    return jnp.where(a * b > 0, jnp.sign(a) * jnp.minimum(jnp.abs(a), jnp.abs(b)), 0.0)


def _lo(x, k):  # cells 0..n-2 along axis k (left of each interior face)
    return jax.lax.slice_in_dim(x, 0, x.shape[k] - 1, axis=k)


def _hi(x, k):  # cells 1..n-1 along axis k (right of each interior face)
    return jax.lax.slice_in_dim(x, 1, x.shape[k], axis=k)


def _divergence(flux, k, h):
    """-(F_{i+1/2} - F_{i-1/2}) / h with zero flux through the two boundary faces."""
    pad = [(0, 0)] * flux.ndim
    pad[k] = (1, 1)
    full = jnp.pad(flux, pad)
    return -(_hi(full, k) - _lo(full, k)) / h


class FokkerPlanck(eqx.Module):
    """The grid PDE above for one energy; see the module docstring for the scheme.

    Args:
        grid: the cells (`Grid`).
        energy: E and Phi of a density (`mfnn.pde.energy.grid_energy`).
        diffusion: D = 1/beta >= 0 (0: no diffusion).
        rate: alpha >= 0, the birth-death rate (0: no reaction).
        flux: ``"upwind"`` or ``"muscl"``.
        scheme: ``"explicit"`` or ``"imex"``.
    """

    grid: Grid
    energy: AbstractGridEnergy
    diffusion: Array
    rate: Array
    inside: Array  # float mask of the domain's cells (shape ``grid.cells``)
    flux: str = eqx.field(static=True)
    scheme: str = eqx.field(static=True)

    def __init__(self, grid, energy, diffusion=0.0, rate=0.0, flux="upwind", scheme="explicit"):
        if flux not in FLUXES:
            raise ConfigError(f"`dynamics.grid.flux` must be one of {list(FLUXES)}; got {flux!r}.")
        if scheme not in SCHEMES:
            raise ConfigError(
                f"`dynamics.grid.scheme` must be one of {list(SCHEMES)}; got {scheme!r}."
            )
        if scheme == "imex" and grid.masked:
            raise ConfigError(
                "`dynamics.grid.scheme: imex` solves the diffusion by a cosine transform on "
                "the whole box; a ball domain in 2-D needs `scheme: explicit`."
            )
        if not diffusion >= 0 or not rate >= 0:
            raise ConfigError(
                f"the diffusion D = 1/beta and the birth-death rate must be >= 0; got "
                f"{diffusion!r} and {rate!r}."
            )
        dtype = energy.confinement.dtype
        self.grid, self.energy = grid, energy
        self.diffusion = jnp.asarray(diffusion, dtype)
        self.rate = jnp.asarray(rate, dtype)
        self.inside = jnp.asarray(grid.inside(), dtype)
        self.flux, self.scheme = flux, scheme

    # ------------------------------------------------------------ potentials
    def mass_of(self, rho: Float[Array, "..."]) -> Float[Array, " C"]:
        """Cell masses m_i = rho_i |h| as a vector (C,)."""
        return rho.reshape(-1) * self.grid.volume

    def potential(self, rho: Float[Array, "..."]) -> Float[Array, "..."]:
        """Phi[rho] at the cell centres, shaped as the grid."""
        return self.energy.first_variation(self.mass_of(rho)).reshape(rho.shape)

    def _mean(self, phi, rho):
        return jnp.sum(phi * rho) / jnp.sum(rho)

    # ----------------------------------------------------------------- fluxes
    def _face_open(self, k):
        return _lo(self.inside, k) * _hi(self.inside, k)

    def _faces(self, rho, phi, k, diffuse: bool):
        """(flux, velocity) on the interior faces along axis k."""
        h = self.grid.h[k]
        u = -(_hi(phi, k) - _lo(phi, k)) / h
        if self.flux == "muscl":
            d = _hi(rho, k) - _lo(rho, k)  # rho_{i+1} - rho_i on interior faces
            pad = [(0, 0)] * rho.ndim
            pad[k] = (1, 1)
            dp = jnp.pad(d, pad)  # zero differences beyond the boundary: zero slopes there
            s = _minmod(_lo(dp, k), _hi(dp, k))  # slope of every cell
            left = _lo(rho, k) + 0.5 * _lo(s, k)
            right = _hi(rho, k) - 0.5 * _hi(s, k)
        else:
            left, right = _lo(rho, k), _hi(rho, k)
        f = jnp.maximum(u, 0) * left + jnp.minimum(u, 0) * right
        if diffuse:
            f = f - self.diffusion * (_hi(rho, k) - _lo(rho, k)) / h
        return f * self._face_open(k), u

    def rhs(self, rho: Float[Array, "..."], diffuse: bool | None = None) -> Float[Array, "..."]:
        """L(rho) = d rho/dt of the semi-discrete scheme (diffusion included unless
        ``diffuse`` is False; default: included under ``explicit``)."""
        diffuse = self.scheme == "explicit" if diffuse is None else diffuse
        phi = self.potential(rho)
        out = -self.rate * (phi - self._mean(phi, rho)) * rho
        for k in range(self.grid.dim):
            f, _ = self._faces(rho, phi, k, diffuse)
            out = out + _divergence(f, k, self.grid.h[k])
        return out

    # ------------------------------------------------------------------ steps
    def _stage(self, rho, dt):
        return rho + dt * self.rhs(rho)

    def _implicit_diffusion(self, rho, dt):
        """(I - dt D Laplacian_h)^{-1} rho with Neumann faces, by DCT-II."""
        eig = jnp.asarray(self.grid.laplacian_eigenvalues(), rho.dtype)
        coef = dctn(rho, type=2, norm="ortho")
        new = idctn(coef / (1.0 - dt * self.diffusion * eig), type=2, norm="ortho")
        # (I - dt D L_h)^{-1} is a nonnegative matrix that keeps the sum: what the transform
        # leaves below 0 or off the mass is round-off, put back here (mass exact, rho >= 0)
        new = jnp.maximum(new, 0.0)
        return new * (jnp.sum(rho) / jnp.sum(new))

    def step(self, rho: Float[Array, "..."], dt) -> Float[Array, "..."]:
        """One time step (see ``scheme`` and ``flux``)."""
        if self.flux == "muscl":
            one = self._stage(rho, dt)
            new = 0.5 * rho + 0.5 * self._stage(one, dt)
        else:
            new = self._stage(rho, dt)
        if self.scheme == "imex":
            new = self._implicit_diffusion(new, dt)
        return new

    # ------------------------------------------------------------- stability
    def cfl(self, rho: Float[Array, "..."], dt) -> Scalar:
        """dt max_i (the rate at which cell i can lose mass): a forward-Euler stage keeps
        rho >= 0 when this is <= 1 (module docstring).

        Per cell and axis, with u_R, u_L the velocities of its right and left faces
        (u^+ = max(u, 0), u^- = max(-u, 0)): upwind loses (u_R^+ + u_L^-) rho_i / h; the
        MUSCL face values rho_i +- s_i / 2 sum to 2 rho_i, so it loses at most
        2 max(u_R^+, u_L^-) rho_i / h; the explicit diffusion 2 D rho_i / h^2; the reaction
        alpha |Phi_i - <Phi>| rho_i."""
        phi = self.potential(rho)
        rate = jnp.zeros(rho.shape, rho.dtype)
        for k in range(self.grid.dim):
            h = self.grid.h[k]
            u = -(_hi(phi, k) - _lo(phi, k)) / h * self._face_open(k)
            pad = [(0, 0)] * rho.ndim
            pad[k] = (1, 1)
            full = jnp.pad(u, pad)  # closed boundary faces: zero velocity
            out_right = jnp.maximum(_hi(full, k), 0.0)  # through the right face
            out_left = jnp.maximum(-_lo(full, k), 0.0)  # through the left face
            if self.flux == "muscl":
                rate = rate + 2.0 * jnp.maximum(out_right, out_left) / h
            else:
                rate = rate + (out_right + out_left) / h
            if self.scheme == "explicit":
                rate = rate + 2.0 * self.diffusion / h**2
        rate = rate + self.rate * jnp.abs(phi - self._mean(phi, rho))
        return dt * jnp.max(jnp.where(self.inside > 0, rate, 0.0))

    def stable_dt(self, rho: Float[Array, "..."]) -> Scalar:
        """The largest dt with ``cfl(rho, dt) <= 1``."""
        return 1.0 / jnp.maximum(self.cfl(rho, 1.0), 1e-300)

    # ----------------------------------------------------------- functionals
    def entropy(self, rho: Float[Array, "..."]) -> Scalar:
        """H = -int rho log rho (cells with rho = 0 add 0)."""
        safe = jnp.maximum(rho, TINY)
        return -jnp.sum(jnp.where(rho > 0, rho * jnp.log(safe), 0.0)) * self.grid.volume

    def free_energy(self, rho: Float[Array, "..."]) -> Scalar:
        """F = E(rho) + D int rho log rho."""
        return self.energy.energy(self.mass_of(rho)) - self.diffusion * self.entropy(rho)

    def dissipation(self, rho: Float[Array, "..."]) -> tuple[Scalar, Scalar]:
        """(-dF/dt of the semi-discrete system, its reaction part alpha int (Phi - <Phi>)^2 rho)."""
        phi = self.potential(rho)
        xi = phi + self.diffusion * jnp.log(jnp.maximum(rho, TINY))
        total = -jnp.sum(xi * self.rhs(rho, diffuse=True) * self.inside) * self.grid.volume
        dev = phi - self._mean(phi, rho)
        jump = self.rate * jnp.sum(dev * dev * rho) * self.grid.volume
        return total, jump
