r"""The explicit finite-volume step of `mfnn.pde.solver.FokkerPlanck` in plain NumPy.

The same scheme, operation for operation (Carrillo, Chertock and Huang 2015; van Leer
1979; Shu and Osher 1988), written the way a user writes it by hand: the reference
`tests/pde/test_numpy_reference.py` checks mfnn against, and the baseline of
`benchmarks/bench_pde.py`.

A density rho holds cell averages on a uniform grid of ``cells`` (D = 1 or 2 axes, cell
widths h_k, cell volume |h| = prod_k h_k, masses m_i = rho_i |h| in row-major order).
The first variation of E = (1/2) sum_k w_k (sum_i A_ki m_i - y_k)^2 + sum_i c_i m_i is

    Phi = A^T (w * (A m - y)) + c                  (two matrix-vector products, O(C K)),

A the (K, C) feature matrix, c_i = (lambda/2) |theta_i|^2 the confinement; a closed-form
energy with a (C, C) kernel U has Phi = V + U m + c instead (`kernel=`). The right-hand side

    L(rho)_i = -alpha (Phi_i - <Phi>_rho) rho_i - sum_k (F_{i+1/2} - F_{i-1/2}) / h_k,
    F_{i+1/2} = u^+ rho^L + u^- rho^R - D (rho_{i+1} - rho_i) / h_k,
    u = -(Phi_{i+1} - Phi_i) / h_k,   <Phi>_rho = sum_i Phi_i rho_i / sum_i rho_i,

with zero flux through the boundary faces; rho^L = rho_i, rho^R = rho_{i+1} (``upwind``)
or rho^L = rho_i + s_i / 2, rho^R = rho_{i+1} - s_{i+1} / 2,
s_i = minmod(rho_i - rho_{i-1}, rho_{i+1} - rho_i), zero slopes in the boundary cells
(``muscl``). A step is forward Euler (``upwind``) or Heun's SSP-RK2 (``muscl``):

    rho^(1) = rho + dt L(rho),   rho^{n+1} = rho / 2 + (rho^(1) + dt L(rho^(1))) / 2.

Only the ``explicit`` scheme (no implicit diffusion). A 2-D ball domain's mask of cells
(``inside``) closes the faces between a cell inside and one outside, as in mfnn.
"""

from __future__ import annotations

import numpy as np

FLUXES = ("upwind", "muscl")


def _lo(x: np.ndarray, k: int) -> np.ndarray:
    """Cells 0..n-2 along axis k (left of each interior face)."""
    idx = [slice(None)] * x.ndim
    idx[k] = slice(0, x.shape[k] - 1)
    return x[tuple(idx)]


def _hi(x: np.ndarray, k: int) -> np.ndarray:
    """Cells 1..n-1 along axis k (right of each interior face)."""
    idx = [slice(None)] * x.ndim
    idx[k] = slice(1, x.shape[k])
    return x[tuple(idx)]


def _pad(x: np.ndarray, k: int) -> np.ndarray:
    """x with one zero added at both ends of axis k."""
    width = [(0, 0)] * x.ndim
    width[k] = (1, 1)
    return np.pad(x, width)


def minmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """minmod(a, b) = sign(a) min(|a|, |b|) where a b > 0, else 0."""
    return np.where(a * b > 0, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0).astype(
        a.dtype, copy=False
    )


class NumpyFokkerPlanck:
    """The explicit grid PDE in NumPy (see the module docstring).

    Args:
        h: the cell widths h_k, one per axis.
        confinement: c (C,), (lambda/2) |theta_i|^2 at the cell centres.
        features, y, weights: A (K, C), y (K,), w (K,) of a sampled energy; or
        kernel, potential: U (C, C) and V (C,) of a closed-form energy.
        diffusion: D >= 0. rate: alpha >= 0.
        flux: ``"upwind"`` or ``"muscl"``.
        inside: the domain's cells (bool, shape ``cells``); None: the whole box.
        dtype: the floating type of every array (default: that of ``confinement``).
    """

    def __init__(
        self,
        h,
        confinement,
        *,
        features=None,
        y=None,
        weights=None,
        kernel=None,
        potential=None,
        diffusion: float = 0.0,
        rate: float = 0.0,
        flux: str = "upwind",
        inside=None,
        dtype=None,
    ):
        if flux not in FLUXES:
            raise ValueError(f"flux must be one of {list(FLUXES)}; got {flux!r}.")
        if (features is None) == (kernel is None):
            raise ValueError("give either features, y, weights or kernel, potential.")
        dtype = np.dtype(np.asarray(confinement).dtype if dtype is None else dtype)
        cast = lambda a: None if a is None else np.ascontiguousarray(a, dtype)  # noqa: E731
        self.h = tuple(float(v) for v in h)
        self.volume = float(np.prod(self.h))
        self.confinement = cast(confinement)
        self.features, self.y, self.weights = cast(features), cast(y), cast(weights)
        self.kernel, self.potential_ = cast(kernel), cast(potential)
        self.dtype = dtype
        self.diffusion = dtype.type(diffusion)
        self.rate = dtype.type(rate)
        self.flux = flux
        self.face_open = None
        if inside is not None and not np.all(inside):
            mask = np.asarray(inside, dtype)
            self.face_open = [_lo(mask, k) * _hi(mask, k) for k in range(mask.ndim)]

    @classmethod
    def from_mfnn(cls, fp, dtype=None) -> NumpyFokkerPlanck:
        """The same problem as an ``explicit`` `mfnn.pde.FokkerPlanck` (its arrays copied
        to NumPy; a `SampledEnergy` or a `KernelEnergy`)."""
        if fp.scheme != "explicit":
            raise ValueError(f"the NumPy step is explicit only; got scheme {fp.scheme!r}.")
        e = fp.energy
        get = lambda name: np.asarray(getattr(e, name)) if hasattr(e, name) else None  # noqa: E731
        return cls(
            fp.grid.h,
            np.asarray(e.confinement),
            features=get("features"),
            y=get("y"),
            weights=get("weights"),
            kernel=get("kernel"),
            potential=get("potential"),
            diffusion=float(fp.diffusion),
            rate=float(fp.rate),
            flux=fp.flux,
            inside=fp.grid.inside() if fp.grid.masked else None,
            dtype=dtype,
        )

    def first_variation(self, mass: np.ndarray) -> np.ndarray:
        """Phi (C,) of the masses m (C,): A^T (w (A m - y)) + c, or V + U m + c."""
        if self.kernel is not None:
            return (self.potential_ + self.kernel @ mass) + self.confinement
        return (self.weights * (self.features @ mass - self.y)) @ self.features + self.confinement

    def potential(self, rho: np.ndarray) -> np.ndarray:
        """Phi at the cell centres, shaped as rho."""
        return self.first_variation(rho.reshape(-1) * self.dtype.type(self.volume)).reshape(
            rho.shape
        )

    def rhs(self, rho: np.ndarray) -> np.ndarray:
        """L(rho), diffusion included."""
        phi = self.potential(rho)
        mean = np.sum(phi * rho) / np.sum(rho)
        out = -self.rate * (phi - mean) * rho
        for k in range(rho.ndim):
            h = self.dtype.type(self.h[k])
            lo, hi = _lo(rho, k), _hi(rho, k)
            u = -(_hi(phi, k) - _lo(phi, k)) / h
            if self.flux == "muscl":
                dp = _pad(hi - lo, k)  # zero differences beyond the boundary
                s = minmod(_lo(dp, k), _hi(dp, k))
                left = lo + 0.5 * _lo(s, k)
                right = hi - 0.5 * _hi(s, k)
            else:
                left, right = lo, hi
            f = np.maximum(u, 0) * left + np.minimum(u, 0) * right
            f = f - self.diffusion * (hi - lo) / h
            if self.face_open is not None:
                f = f * self.face_open[k]
            full = _pad(f, k)
            out = out + (-(_hi(full, k) - _lo(full, k)) / h)
        return out

    def step(self, rho: np.ndarray, dt: float) -> np.ndarray:
        """One step: forward Euler (upwind) or SSP-RK2 (muscl)."""
        dt = self.dtype.type(dt)
        one = rho + dt * self.rhs(rho)
        if self.flux == "muscl":
            return 0.5 * rho + 0.5 * (one + dt * self.rhs(one))
        return one

    def run(self, rho: np.ndarray, dt: float, steps: int) -> np.ndarray:
        """``steps`` steps from rho."""
        rho = np.asarray(rho, self.dtype)
        for _ in range(steps):
            rho = self.step(rho, dt)
        return rho
