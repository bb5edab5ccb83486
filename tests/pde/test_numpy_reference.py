"""`FokkerPlanck.step` against an independent NumPy step of the same scheme.

`benchmarks/numpy_pde.py` writes the explicit finite-volume step (upwind / forward Euler,
MUSCL-minmod / SSP-RK2, central diffusion, reaction, first variation by two
matrix-vector products) in plain NumPy; the benchmark times mfnn against it, and here the
two must take the same steps in float64 up to round-off: max |rho_mfnn - rho_numpy| <=
1e-13 max |rho| after STEPS steps, on small 1-D and 2-D grids, with diffusion and
reaction. The movement of the steps is checked to be far above that tolerance, and the
other flux to land far from it, so an error in either code fails the comparison.
"""

import importlib.util
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.pde import FokkerPlanck, Grid, KernelEnergy, SampledEnergy

_SPEC = importlib.util.spec_from_file_location(
    "numpy_pde", Path(__file__).resolve().parents[2] / "benchmarks" / "numpy_pde.py"
)
numpy_pde = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(numpy_pde)

STEPS = 20
NODES = 12  # Gauss-Hermite nodes of the quadrature energy
RTOL = 1e-13
DIFFUSION, RATE, L2 = 0.05, 1.0, 0.5


def quadrature_energy(grid: Grid) -> SampledEnergy:
    """E = (1/2) E_x (f(x) - f*(x))^2 + (l2/2) int |theta|^2 for x ~ N(0, 1) by a Gauss-
    Hermite rule, phi(x; theta) = tanh(w x [+ b]), f* = tanh(2 x + 0.5) - tanh(x); built
    in NumPy (no compilation)."""
    x, w = np.polynomial.hermite_e.hermegauss(NODES)
    w = w / w.sum()
    c = np.asarray(grid.centers())
    pre = np.outer(x, c[:, 0]) + (c[:, 1] if grid.dim == 2 else 0.0)
    return SampledEnergy(
        features=jnp.asarray(np.tanh(pre)),
        y=jnp.asarray(np.tanh(2 * x + 0.5) - np.tanh(x)),
        weights=jnp.asarray(w),
        confinement=jnp.asarray(0.5 * L2 * np.sum(c**2, axis=1)),
    )


def kernel_energy(grid: Grid) -> KernelEnergy:
    """R = R0 + V.m + (1/2) m.U m with U the Gram matrix of the quadrature features (a
    closed-form energy's structure: a dense (C, C) kernel)."""
    e = quadrature_energy(grid)
    a, w, y = (np.asarray(v) for v in (e.features, e.weights, e.y))
    return KernelEnergy(
        kernel=jnp.asarray(a.T @ (w[:, None] * a)),
        potential=jnp.asarray(-(w * y) @ a),
        r0=jnp.asarray(0.5 * np.sum(w * y * y)),
        confinement=e.confinement,
    )


@eqx.filter_jit
def _run(fp: FokkerPlanck, rho0):
    dt = 0.5 * fp.stable_dt(rho0)
    return jax.lax.fori_loop(0, STEPS, lambda i, r: fp.step(r, dt), rho0), dt


def initial(grid: Grid) -> np.ndarray:
    """A lopsided smooth density (a Gaussian times 1 + 0.5 sin), positive on the domain."""
    c = np.asarray(grid.centers()).reshape(*grid.cells, grid.dim)
    r2 = np.sum((c - 0.3) ** 2, axis=-1)
    rho = np.exp(-r2) * (1 + 0.5 * np.sin(3 * c[..., 0])) * grid.inside()
    return rho / (rho.sum() * grid.volume)


GRIDS = {
    "1d": lambda: Grid(-4.0, 4.0, 48),
    "2d": lambda: Grid((-3.0, -3.0), (3.0, 3.0), (16, 12)),
    "2d_ball": lambda: Grid((-3.0, -3.0), (3.0, 3.0), (14, 14), radius=2.8),
}
CASES = [
    ("1d", "upwind", "sampled"),
    ("1d", "muscl", "sampled"),
    ("2d", "upwind", "sampled"),
    ("2d", "muscl", "sampled"),
    ("2d_ball", "muscl", "sampled"),
    ("1d", "muscl", "kernel"),
]


@pytest.mark.parametrize(("grid_name", "flux", "energy"), CASES)
def test_numpy_step_matches_mfnn(grid_name, flux, energy):
    grid = GRIDS[grid_name]()
    e = quadrature_energy(grid) if energy == "sampled" else kernel_energy(grid)
    fp = FokkerPlanck(grid, e, diffusion=DIFFUSION, rate=RATE, flux=flux)
    rho0 = initial(grid)
    ours, dt = jax.device_get(_run(fp, jnp.asarray(rho0)))
    ref = numpy_pde.NumpyFokkerPlanck.from_mfnn(fp)
    theirs = ref.run(rho0, float(dt), STEPS)
    scale = np.max(np.abs(theirs))
    moved = np.max(np.abs(theirs - rho0))
    assert moved > 1e-3 * scale  # the steps move the density well above the tolerance
    assert np.max(np.abs(ours - theirs)) <= RTOL * scale
    # the comparison separates schemes: the other flux lands far outside the tolerance
    other = numpy_pde.NumpyFokkerPlanck.from_mfnn(fp)
    other.flux = "upwind" if flux == "muscl" else "muscl"
    assert np.max(np.abs(ours - other.run(rho0, float(dt), STEPS))) > 1e6 * RTOL * scale
    # mass is conserved by both (a flux form; the reaction keeps the mass)
    assert abs(theirs.sum() * grid.volume - 1.0) <= 1e-13


def test_numpy_first_variation_is_two_matvecs():
    """Phi = A^T (w (A m - y)) + c equals mfnn's first variation and, for the Gram kernel
    U = A^T diag(w) A and V = -A^T (w y), the closed-form structure V + U m + c."""
    grid = GRIDS["2d"]()
    rho = initial(grid)
    sampled = FokkerPlanck(grid, quadrature_energy(grid))
    kernel = FokkerPlanck(grid, kernel_energy(grid))
    phi = numpy_pde.NumpyFokkerPlanck.from_mfnn(sampled).potential(rho)
    phi_kernel = numpy_pde.NumpyFokkerPlanck.from_mfnn(kernel).potential(rho)
    ours = np.asarray(eqx.filter_jit(lambda fp, r: fp.potential(r))(sampled, jnp.asarray(rho)))
    scale = np.max(np.abs(phi))
    assert np.max(np.abs(ours - phi)) <= RTOL * scale
    assert np.max(np.abs(phi_kernel - phi)) <= 1e-12 * scale
