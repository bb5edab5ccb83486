r"""A uniform Cartesian grid of cells on a box of parameter space (D = 1 or 2).

Cell i covers prod_k [low_k + i_k h_k, low_k + (i_k + 1) h_k], h_k = (high_k - low_k) / n_k;
a density rho is stored as its cell averages, an array of shape ``cells`` (n_1[, n_2]),
and the mass of a cell is rho_i |h| with |h| = prod_k h_k. The finite-volume solver
(`mfnn.pde.solver`) moves mass between neighbouring cells only, so sum_i rho_i |h| is
conserved to round-off.

A ``ball`` domain in 2-D is the set of cells whose centre lies in the disc (a staircase
approximation of the disc, first order in h at the boundary); cells outside hold no mass
and no flux crosses their faces. In 1-D a ball is the interval [-r, r] and the grid is
exactly that interval.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from .._typing import Array, Float
from ..errors import ConfigError
from ..measure import Constant, Gaussian, Law, Uniform

MAX_DIM = 2


class Grid(eqx.Module):
    """The cells of a box ``[low, high]`` (one entry per axis), ``cells`` per axis.

    Args:
        low, high: the box, one float per axis (low < high).
        cells: the number of cells per axis (>= 4).
        bounded: True when the box (or the ball ``radius``) is the problem's domain, so
            its no-flux boundary is physics (docs/theory.md section 11); False when it
            truncates R^D, so mass must stay away from its edge (`boundary_mass`).
        radius: a ball domain of this radius centred at 0 (2-D: cells whose centre lies in
            the disc; 1-D: the box must be [-radius, radius]); None: the whole box.
    """

    low: tuple[float, ...] = eqx.field(static=True)
    high: tuple[float, ...] = eqx.field(static=True)
    cells: tuple[int, ...] = eqx.field(static=True)
    bounded: bool = eqx.field(static=True)
    radius: float | None = eqx.field(static=True)

    def __init__(self, low, high, cells, bounded: bool = False, radius: float | None = None):
        self.low = tuple(float(v) for v in np.atleast_1d(low))
        self.high = tuple(float(v) for v in np.atleast_1d(high))
        self.cells = tuple(int(v) for v in np.atleast_1d(cells))
        self.bounded = bool(bounded)
        self.radius = None if radius is None else float(radius)

    def __check_init__(self):
        dim = len(self.cells)
        if not 1 <= dim <= MAX_DIM:
            raise ConfigError(
                f"`dynamics.grid.cells` must give 1 or 2 axes (a grid of parameter space in "
                f"D = 1 or 2); got {dim} axes."
            )
        if len(self.low) != dim or len(self.high) != dim:
            raise ConfigError(
                f"`dynamics.grid.low` and `high` need one value per axis ({dim}); got "
                f"{len(self.low)} and {len(self.high)}."
            )
        for k in range(dim):
            if not self.high[k] > self.low[k]:
                raise ConfigError(
                    f"`dynamics.grid` axis {k} needs low < high; got low={self.low[k]}, "
                    f"high={self.high[k]}."
                )
            if self.cells[k] < 4:
                raise ConfigError(
                    f"`dynamics.grid.cells` must be >= 4 per axis; got {self.cells[k]} on axis {k}."
                )
        if self.radius is not None and dim == 1:
            if not (
                math.isclose(self.low[0], -self.radius) and math.isclose(self.high[0], self.radius)
            ):
                raise ConfigError(
                    f"a 1-D ball domain of radius {self.radius} is the interval [-r, r]: set "
                    f"`dynamics.grid.low: {-self.radius}` and `high: {self.radius}`; got "
                    f"[{self.low[0]}, {self.high[0]}]."
                )

    # ----------------------------------------------------------------- geometry
    @property
    def dim(self) -> int:
        """D, the number of axes."""
        return len(self.cells)

    @property
    def size(self) -> int:
        """C, the number of cells."""
        return math.prod(self.cells)

    @property
    def h(self) -> tuple[float, ...]:
        """The cell widths h_k."""
        return tuple((b - a) / n for a, b, n in zip(self.low, self.high, self.cells, strict=True))

    @property
    def volume(self) -> float:
        """|h| = prod_k h_k, the volume of one cell."""
        return math.prod(self.h)

    def axis(self, k: int) -> np.ndarray:
        """The cell centres along axis ``k`` (n_k,)."""
        return self.low[k] + (np.arange(self.cells[k]) + 0.5) * self.h[k]

    def edges(self, k: int) -> np.ndarray:
        """The cell edges along axis ``k`` (n_k + 1,)."""
        return np.linspace(self.low[k], self.high[k], self.cells[k] + 1)

    def centers(self, dtype=jnp.float64) -> Float[Array, "C D"]:
        """The cell centres as rows, in C (row-major) order of ``rho.reshape(-1)``."""
        mesh = np.meshgrid(*(self.axis(k) for k in range(self.dim)), indexing="ij")
        return jnp.asarray(np.stack([g.reshape(-1) for g in mesh], axis=1), dtype)

    def laplacian_eigenvalues(self) -> np.ndarray:
        """The eigenvalues (shape ``cells``) of the cell-centred Laplacian with no-flux
        (Neumann) faces, sum_k -4 sin^2(pi j_k / (2 n_k)) / h_k^2: the DCT-II (``norm=
        "ortho"``, every axis) diagonalises it, so implicit diffusion and the heat
        semigroup on the grid are exact transforms."""
        eig = np.zeros((1,) * self.dim)
        for k in range(self.dim):
            n, h = self.cells[k], self.h[k]
            shape = [1] * self.dim
            shape[k] = n
            eig = eig + (-4.0 * np.sin(np.pi * np.arange(n) / (2 * n)) ** 2 / h**2).reshape(shape)
        return eig

    def inside(self) -> np.ndarray:
        """Boolean mask (shape ``cells``) of the cells of the domain (all but those outside
        a 2-D ball)."""
        if self.radius is None or self.dim == 1:
            return np.ones(self.cells, bool)
        c = np.asarray(self.centers()).reshape(*self.cells, self.dim)
        return np.sum(c**2, axis=-1) <= self.radius**2

    @property
    def masked(self) -> bool:
        """Whether some cells of the box lie outside the domain (a 2-D ball)."""
        return self.radius is not None and self.dim > 1

    # ------------------------------------------------------------- densities
    def mass(self, rho: Float[Array, "..."]) -> Array:
        """int rho = sum_i rho_i |h|."""
        return jnp.sum(rho) * self.volume

    def boundary_mass(self, rho: Float[Array, "..."]) -> Array:
        """The mass in the outermost layer of cells (every face of the box), relative to the
        total: what a truncated R^D must keep small."""
        inner = rho
        for k in range(self.dim):
            inner = jnp.take(inner, jnp.arange(1, self.cells[k] - 1), axis=k)
        return (jnp.sum(rho) - jnp.sum(inner)) / jnp.sum(rho)

    def density_of_laws(
        self, laws: list[Law], dtype=jnp.float64, fold: bool = False
    ) -> Float[Array, "..."]:
        """Cell averages of the product law prod_k laws[k] (exact: differences of the CDF
        over each cell), normalised to mass 1 over the domain's cells.

        ``fold``: the law of the points after the normal reflection into the box that
        bounded runs apply to particles starting outside (`mfnn.domains`: per axis the
        triangle wave of period 2 P, P = high - low), i.e. each cell [a, b] also collects
        the mass of its images [a + 2 k P, b + 2 k P] and [2 high - b + 2 k P,
        2 high - a + 2 k P]; without it the mass outside is dropped and the rest
        renormalised. A `Constant` law is a point mass, which no grid holds: `ConfigError`."""
        if len(laws) != self.dim:
            raise ConfigError(f"a product law on the grid needs {self.dim} laws; got {len(laws)}.")
        factors = []
        for k, law in enumerate(laws):
            p = self._cell_masses(law, k, fold)
            factors.append(p)
        mass = factors[0]
        for p in factors[1:]:
            mass = np.multiply.outer(mass, p)
        mass = mass * self.inside()
        total = mass.sum()
        if not total > 0:
            raise ConfigError(
                "the initial law puts no mass on the grid: widen `dynamics.grid.low/high` to "
                "cover it."
            )
        return jnp.asarray(mass / (total * self.volume), dtype)

    def _cell_masses(self, law: Law, k: int, fold: bool) -> np.ndarray:
        """The mass law puts on each cell of axis k (with its folded images if ``fold``)."""
        e = self.edges(k)
        if not fold:
            return self._interval_masses(law, e[:-1], e[1:], k)
        period = 2.0 * (self.high[k] - self.low[k])
        if isinstance(law, Gaussian):  # how far from 0 the law has mass (40 std: ~1e-348)
            reach = abs(law.mean) + 40.0 * law.std
        elif isinstance(law, Uniform):
            reach = max(abs(law.low), abs(law.high))
        else:  # a Constant: `_interval_masses` refuses it
            reach = 0.0
        n = int(np.ceil((reach + abs(self.low[k]) + abs(self.high[k])) / period)) + 1
        total = np.zeros(self.cells[k])
        for j in range(-n, n + 1):
            shift = j * period
            total += self._interval_masses(law, e[:-1] + shift, e[1:] + shift, k)
            hi = 2.0 * self.high[k] + shift
            total += self._interval_masses(law, hi - e[1:], hi - e[:-1], k)
        return total

    @staticmethod
    def _interval_masses(law: Law, a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
        """law([a_i, b_i]) for each i (a_i <= b_i)."""
        if isinstance(law, Gaussian):
            if law.std == 0:
                raise ConfigError(
                    f"axis {k} starts as a gaussian law of std 0, a point mass, which a grid "
                    "cannot hold: give it a positive std (wider than a few cells)."
                )
            return ndtr((b - law.mean) / law.std) - ndtr((a - law.mean) / law.std)
        if isinstance(law, Uniform):
            overlap = np.minimum(b, law.high) - np.maximum(a, law.low)
            return np.clip(overlap, 0, None) / (law.high - law.low)
        if isinstance(law, Constant):
            raise ConfigError(
                f"axis {k} starts as a constant law (every particle at {law.value}), a point "
                "mass, which a grid cannot hold: use a gaussian or uniform law for it, or "
                "remove the block from the particle (e.g. `model.train_output: false` for a "
                "== 1)."
            )
        raise TypeError(type(law))  # pragma: no cover - Law is a closed union

    def density_of_points(
        self,
        points: Float[Array, "m D"],
        weights: Float[Array, " m"] | None = None,
        dtype=jnp.float64,
    ) -> Float[Array, "..."]:
        """The histogram density of a (weighted) particle measure, mass 1. Points outside
        the grid are refused (`ConfigError`): the grid must hold the measure."""
        pts = np.asarray(points, np.float64).reshape(len(points), -1)
        if pts.shape[1] != self.dim:
            raise ConfigError(
                f"particles of dimension {pts.shape[1]} on a grid of dimension {self.dim}."
            )
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        out = np.any((pts < lo) | (pts > hi), axis=1)
        if self.masked:
            out |= np.sum(pts**2, axis=1) > self.radius**2
        if out.any():
            where = f"the ball of radius {self.radius}" if self.masked else "the grid"
            raise ConfigError(
                f"{int(out.sum())} of {len(pts)} particles lie outside {where} "
                f"[{self.low}, {self.high}]: widen `dynamics.grid.low/high` (or the domain)."
            )
        w = np.full(len(pts), 1.0 / len(pts)) if weights is None else np.asarray(weights, float)
        hist, _ = np.histogramdd(pts, bins=[self.edges(k) for k in range(self.dim)], weights=w)
        return jnp.asarray(hist / (hist.sum() * self.volume), dtype)
