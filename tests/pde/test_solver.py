"""The finite-volume solver of the mean-field PDE on a grid (`mfnn.pde`).

Known answers: the heat kernel, the Ornstein-Uhlenbeck law and the linear transport of a
Gaussian, with their observed orders in h, implicit Euler in time for ``imex``, and the
Gibbs state N(0, D/lambda) at long times. Invariants: mass to round-off, positivity under
the CFL bound, nothing outside a ball domain, the energy dissipation identity (exact for the
semi-discrete system, first order in dt for one step). Then the grid's densities and the
refusals. The scheme is that of Carrillo, Chertock and Huang (2015) with van Leer's (1979)
minmod-limited reconstruction; its gradient-flow structure is that of Jordan, Kinderlehrer
and Otto (1998), F = E + D int rho log rho.

Cost: XLA's compile is most of it (even one op run eagerly compiles a program), so every
run goes through one jitted program (`run`) whose numbers are all traced, every 1-D grid
has one box and every energy a feature matrix of one shape (`NODES` rows; a pure
confinement gives them weight 0, so R == 0): a `FokkerPlanck` on a given grid has one
pytree structure and `run` compiles once per (cells, flux, scheme), shared by the tests.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from scipy.special import ndtr

from mfnn import ConfigError, GaussianInputs, Teacher, TwoLayer
from mfnn.measure import Constant, Gaussian, Uniform
from mfnn.objectives import PopulationRisk
from mfnn.pde import FokkerPlanck, Grid, SampledEnergy, grid_energy
from tiers import first_by_default

NODES = 16  # quadrature nodes of the nonlocal energies = rows of every feature matrix
BOX = (-6.0, 6.0)  # the 1-D grids: the Gaussians stay > 6 standard deviations inside
BOX2 = ((-4.0, -4.0), (4.0, 4.0))  # the 2-D grids
EPS = float(np.finfo(np.float64).eps)

# cells: a pair by default (the order from it), a ladder in the slow tier (a fitted order)
LADDERS = first_by_default([(100, 200), (50, 100, 200, 400)])
EXPLICIT = [("upwind", "explicit"), ("muscl", "explicit")]
IMEX = [
    pytest.param("upwind", "imex", marks=pytest.mark.slow),
    pytest.param("muscl", "imex", marks=pytest.mark.slow),
]


# ------------------------------------------------------------------ helpers


@eqx.filter_jit
def _run(fp: FokkerPlanck, rho0, t_end, steps, dt_max, cfl):
    stable = fp.stable_dt(rho0)
    bound = jnp.minimum(dt_max, cfl * stable)
    n = jnp.where(t_end > 0, jnp.ceil(t_end / bound), steps)  # float: strict promotion
    dt = jnp.where(t_end > 0, t_end / n, bound)
    rho = jax.lax.fori_loop(0, n.astype(jnp.int64), lambda i, r: fp.step(r, dt), rho0)
    return {"rho": rho, "dt": dt, "stable_dt": stable, "cfl_start": fp.cfl(rho0, stable)}


def run(fp: FokkerPlanck, rho0, *, t_end=0.0, steps=0, dt=math.inf, cfl=math.inf) -> dict:
    """Steps of ``fp`` from ``rho0`` (`jax.lax.fori_loop` under jit), as numpy values.

    The step bound is min(dt, cfl x stable_dt(rho0)); with ``t_end`` > 0 the run takes
    the fewest equal steps under it that end at t_end, else ``steps`` steps at the bound.
    Returns rho, dt, stable_dt (at rho0) and cfl_start = cfl(rho0, stable_dt).
    """
    args = (jnp.asarray(a, jnp.float64) for a in (t_end, steps, dt, cfl))
    return jax.device_get(_run(fp, jnp.asarray(rho0), *args))


def free_energy(fp: FokkerPlanck, rho) -> float:
    """F = (1/2) sum_k w_k (sum_i A_ki m_i - y_k)^2 + sum_i m_i (lambda/2)|theta_i|^2 +
    D sum_i m_i log rho_i, m_i = rho_i |h|, in numpy (an independent evaluation)."""
    e = jax.device_get(fp.energy)
    rho = np.asarray(rho).reshape(-1)
    m = rho * fp.grid.volume
    r = e.features @ m - e.y
    pos = rho > 0
    entropy_part = np.sum(m[pos] * np.log(rho[pos]))
    return float(
        0.5 * np.sum(e.weights * r * r) + e.confinement @ m + float(fp.diffusion) * entropy_part
    )


def energy_of(grid: Grid, potential) -> SampledEnergy:
    """Phi = ``potential`` (C,) at the cell centres and R == 0 (`NODES` sample rows of
    weight 0); built from numpy, so that it compiles nothing."""
    return SampledEnergy(
        features=jnp.asarray(np.zeros((NODES, grid.size))),
        y=jnp.asarray(np.zeros(NODES)),
        weights=jnp.asarray(np.zeros(NODES)),
        confinement=jnp.asarray(potential),
    )


def confined(grid: Grid, lam: float) -> SampledEnergy:
    """Phi = (lambda/2) |theta|^2 (either sign of lambda), R == 0."""
    centres = np.asarray(grid.centers())
    return energy_of(grid, 0.5 * lam * np.sum(centres**2, axis=1))


def nonlocal_energy(grid: Grid, l2: float = 0.5) -> SampledEnergy:
    """E = R + (l2/2) int |theta|^2 for the quadrature population risk (x ~ N(0, 1)) of a
    two-neuron tanh teacher; a particle is w (1-D grid) or (w, b) (2-D grid)."""
    net = TwoLayer(d=1, activation="tanh", bias=grid.dim == 2, train_output=False)
    teacher = Teacher([[2.0], [-1.0]], b=[0.5, 0.0], activation="tanh")
    objective = PopulationRisk.make(
        teacher, GaussianInputs(1), "quadrature", model=net, nodes=NODES, l2=l2
    )
    energy = eqx.filter_jit(grid_energy)(objective, net, grid)  # one compile, not per op
    assert energy.features.shape == (NODES, grid.size)
    return energy


def cells_of_gaussian(grid: Grid, k: int, mean: float, std: float) -> np.ndarray:
    """Exact cell averages of N(mean, std^2) along axis k: CDF differences / h_k."""
    return np.diff(ndtr((grid.edges(k) - mean) / std)) / grid.h[k]


def l1(grid: Grid, rho, exact) -> float:
    """int |rho - exact| (cell averages)."""
    return float(np.sum(np.abs(np.asarray(rho) - exact)) * grid.volume)


def order(ns, errors) -> float:
    """Observed order p of errors ~ h^p, h ~ 1/n: least-squares slope of log e on log h."""
    return -float(np.polyfit(np.log(ns), np.log(errors), 1)[0])


def ou_moments(m0, s0, lam, diffusion, t):
    """Mean and std at t of d theta = -lambda theta dt + sqrt(2 D) dB from N(m0, s0^2);
    lambda = 0 is the heat kernel, variance s0^2 + 2 D t."""
    if lam == 0:
        return m0, math.sqrt(s0**2 + 2 * diffusion * t)
    decay = math.exp(-lam * t)
    return m0 * decay, math.sqrt(s0**2 * decay**2 + diffusion / lam * (1 - decay**2))


def gaussian_error_1d(n, flux, scheme, *, lam, diffusion, m0, s0, t_end, **bound):
    """L1 error at t_end of the 1-D run from N(m0, s0^2) against the exact Gaussian;
    ``bound``: ``dt=`` or ``cfl=`` (see `run`)."""
    grid = Grid(*BOX, n)
    fp = FokkerPlanck(grid, confined(grid, lam), diffusion=diffusion, flux=flux, scheme=scheme)
    out = run(fp, cells_of_gaussian(grid, 0, m0, s0), t_end=t_end, **bound)
    mean, std = ou_moments(m0, s0, lam, diffusion, t_end)
    return l1(grid, out["rho"], cells_of_gaussian(grid, 0, mean, std))


# ---------------------------------------------------------------- known solutions


@pytest.mark.parametrize("ns", LADDERS)
@pytest.mark.parametrize(("flux", "scheme"), EXPLICIT + IMEX)
def test_heat_kernel_second_order(flux, scheme, ns):
    """Phi == 0, D = 1/2: N(1/2, 1/4) spreads to variance 1/4 + 2 D t (t = 1/2). The
    transport flux plays no part (u == 0), the diffusion is central (second order in h) and
    dt = 0.2 h^2 / (2 D) makes the time error O(h^2) under either scheme: order 2 for all
    four (not 1 for upwind: upwinding acts on a velocity only). Measured 2.00 on every pair
    from n = 50 to 400."""
    d = 0.5
    errors = []
    for n in ns:
        dt = 0.2 * ((BOX[1] - BOX[0]) / n) ** 2 / (2 * d)
        kw = {"lam": 0.0, "diffusion": d, "m0": 0.5, "s0": 0.5, "t_end": 0.5, "dt": dt}
        errors.append(gaussian_error_1d(n, flux, scheme, **kw))
    assert order(ns, errors) > 1.8, errors
    assert errors[ns.index(200)] < 1e-3, errors  # measured 1.5e-4 to 4.9e-4


def test_imex_diffusion_is_implicit_euler():
    """Under ``imex`` with Phi == 0 a step is (I - dt D Laplacian_h)^{-1}. Against the exact
    semi-discrete solution exp(t D Laplacian_h) rho0 (Neumann modes by scipy's DCT-II) the
    error is first order in dt, halving with dt at dt = 8.7, 4.3, 2.2 x the explicit limit
    h^2 / (2 D) (measured ratios 1.91, 1.95; 1.99 at 64 and 128 steps), and the density
    stays non-negative to round-off."""
    diffusion, t_end, n = 0.5, 0.5, 100
    grid = Grid(*BOX, n)
    h = grid.h[0]
    fp = FokkerPlanck(grid, confined(grid, 0.0), diffusion=diffusion, scheme="imex")
    rho0 = cells_of_gaussian(grid, 0, 0.5, 0.5)
    eig = -4 * np.sin(np.pi * np.arange(n) / (2 * n)) ** 2 / h**2
    coef = scipy.fft.dct(rho0, type=2, norm="ortho")
    exact = scipy.fft.idct(coef * np.exp(t_end * diffusion * eig), type=2, norm="ortho")
    errors = []
    for steps in (4, 8, 16):
        rho = run(fp, rho0, steps=steps, dt=t_end / steps)["rho"]
        assert rho.min() >= -1e-14 * rho.max()
        errors.append(l1(grid, rho, exact))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, atol=0.15)


# observed orders on the pairs of n = 50, 100, 200, 400: upwind 0.87, 0.93, 0.96 (explicit
# and imex), muscl explicit 1.82, 1.93, 1.97, muscl imex 1.75, 1.80, 1.76 (imex is first
# order in time and here dt ~ h, so its order tends to 1 as h -> 0: a lower threshold)
OU_ORDER = {
    ("upwind", "explicit"): 0.8,
    ("upwind", "imex"): 0.8,
    ("muscl", "explicit"): 1.7,
    ("muscl", "imex"): 1.5,
}


@pytest.mark.parametrize("ns", LADDERS)
@pytest.mark.parametrize(("flux", "scheme"), EXPLICIT + IMEX)
def test_ornstein_uhlenbeck_orders(flux, scheme, ns):
    """Phi = lambda |theta|^2 / 2 (lambda = 1), D = 1/2, from N(1, 1/4): the law stays
    Gaussian, mean m0 e^{-lambda t}, variance s0^2 e^{-2 lambda t} + (D/lambda)(1 -
    e^{-2 lambda t}); the L1 error at t = 1/2 (dt = 0.2 x stable dt) has observed order
    ~1 (upwind) and ~2 (muscl)."""
    errors = [
        gaussian_error_1d(
            n, flux, scheme, lam=1.0, diffusion=0.5, m0=1.0, s0=0.5, t_end=0.5, cfl=0.2
        )
        for n in ns
    ]
    assert order(ns, errors) > OU_ORDER[flux, scheme], errors


@pytest.mark.parametrize("ns", LADDERS)
@pytest.mark.parametrize("flux", ["upwind", "muscl"])
def test_linear_transport_orders(flux, ns):
    """D = 0, Phi = lambda |theta|^2 / 2: the flow theta(t) = theta0 e^{-lambda t} pushes
    N(m0, s0^2) forward to N(m0 e^{-lambda t}, s0^2 e^{-2 lambda t}). Upwind is first
    order; muscl's minmod limiter clips the slope at the peak (first order there), so its
    order approaches 2 from below: measured 1.46, 1.73, 1.85 on the pairs of n = 50..400
    (0.84, 0.92, 0.96 for upwind); thresholds 1.5 and 0.8."""
    errors = [
        gaussian_error_1d(
            n, flux, "explicit", lam=1.0, diffusion=0.0, m0=1.0, s0=1.0, t_end=0.5, cfl=0.2
        )
        for n in ns
    ]
    assert order(ns, errors) > {"upwind": 0.8, "muscl": 1.5}[flux], errors


@pytest.mark.parametrize("ns", LADDERS)
@pytest.mark.parametrize(
    ("flux", "want"), [("upwind", 0.8), pytest.param("muscl", 1.7, marks=pytest.mark.slow)]
)
def test_long_run_reaches_the_gibbs_state(flux, want, ns):
    """D = 1/2, Phi = lambda |theta|^2 / 2: from N(1, 1/4) the density converges to the
    Gibbs state N(0, D/lambda) (e^{-lambda t} = 6e-6 at t = 12). The explicit scheme's
    fixed point is O(h) (upwind) or O(h^2) (muscl) from it: measured orders 0.87, 0.94,
    0.97 and 1.80, 1.93, 1.97 on the pairs of n = 50..400. The upwind-imex fixed point
    solves the same face equations (zero net flux), whatever dt: at n = 100 it ends at the
    same error, 5.064e-2."""
    lam, diffusion = 1.0, 0.5
    errors = []
    for n in ns:
        grid = Grid(*BOX, n)
        fp = FokkerPlanck(grid, confined(grid, lam), diffusion=diffusion, flux=flux)
        rho = run(fp, cells_of_gaussian(grid, 0, 1.0, 0.5), t_end=12.0, cfl=0.9)["rho"]
        gibbs = cells_of_gaussian(grid, 0, 0.0, math.sqrt(diffusion / lam))
        errors.append(l1(grid, rho, gibbs))
    assert order(ns, errors) > want, errors
    if flux == "upwind":
        grid = Grid(*BOX, 100)
        fp = FokkerPlanck(grid, confined(grid, lam), diffusion=diffusion, scheme="imex")
        rho = run(fp, cells_of_gaussian(grid, 0, 1.0, 0.5), t_end=12.0, cfl=0.9)["rho"]
        gibbs = cells_of_gaussian(grid, 0, 0.0, math.sqrt(diffusion / lam))
        np.testing.assert_allclose(l1(grid, rho, gibbs), errors[ns.index(100)], rtol=1e-4)
        np.testing.assert_allclose(errors[ns.index(100)], 5.064e-2, rtol=1e-3)


# ---------------------------------------------------------------- two dimensions


@pytest.mark.parametrize(
    ("flux", "ns", "want"),
    [
        ("upwind", (24, 48), 0.75),
        pytest.param("upwind", (24, 48, 96), 0.8, marks=pytest.mark.slow),
        pytest.param("muscl", (24, 48, 96), 1.6, marks=pytest.mark.slow),
    ],
)
def test_ornstein_uhlenbeck_in_two_dimensions(flux, ns, want):
    """The 2-D OU problem (lambda = 1, D = 1/2) from a product Gaussian has the product of
    the 1-D solutions; the L1 error at t = 1/2 decreases with h (measured orders: upwind
    0.83, 0.90, muscl 1.69, 1.87 on n = 24, 48, 96 cells per axis)."""
    lam, diffusion, t_end = 1.0, 0.5, 0.5
    m0, s0 = (1.0, -0.5), (0.5, 0.7)
    errors = []
    for n in ns:
        grid = Grid(*BOX2, (n, n))
        fp = FokkerPlanck(grid, confined(grid, lam), diffusion=diffusion, flux=flux)
        rho0 = grid.density_of_laws([Gaussian(m, s) for m, s in zip(m0, s0, strict=True)])
        rho = run(fp, rho0, t_end=t_end, cfl=0.5)["rho"]
        exact = [
            cells_of_gaussian(grid, k, *ou_moments(m0[k], s0[k], lam, diffusion, t_end))
            for k in range(2)
        ]
        errors.append(l1(grid, rho, np.multiply.outer(*exact)))
    assert order(ns, errors) > want, errors


def test_ball_domain_keeps_its_mass_inside():
    """A disc of radius 2 (staircase of 40 x 40 cells) under Phi = -|theta|^2 (an outward
    flow), D = 0.05 and birth-death rate 1: after 600 steps (t ~ 3) 99.999 % of the mass is
    pressed against the wall (r > 1.5; 10.6 % at the start), yet the mass is conserved to
    round-off, the cells outside the disc hold exactly 0 and rho >= 0. ``imex`` is refused
    on a ball."""
    r = 2.0
    grid = Grid((-r, -r), (r, r), (40, 40), bounded=True, radius=r)
    energy = confined(grid, -2.0)
    fp = FokkerPlanck(grid, energy, diffusion=0.05, rate=1.0)
    rho0 = np.asarray(grid.density_of_laws([Gaussian(0.8, 0.5), Gaussian(0.0, 0.5)]))
    outside = ~grid.inside()
    assert outside.sum() > 0 and np.all(rho0[outside] == 0.0)
    rho = run(fp, rho0, steps=600, cfl=0.5)["rho"]
    np.testing.assert_allclose(rho.sum(), rho0.sum(), rtol=1e-13, atol=0)
    assert np.all(rho[outside] == 0.0)
    assert rho.min() >= 0.0
    radius = np.sqrt(np.sum(np.asarray(grid.centers()) ** 2, axis=1)).reshape(grid.cells)
    assert np.sum(rho[radius > 1.5]) * grid.volume > 0.999
    with pytest.raises(ConfigError, match="imex"):
        FokkerPlanck(grid, energy, diffusion=0.05, scheme="imex")


# ---------------------------------------------------------------- invariants


def nonlocal_problem(dim, flux, scheme, diffusion=0.1, rate=2.0):
    """(grid, solver, rho0) for the full PDE with `nonlocal_energy`: 100 cells on BOX, or
    48 x 48 on BOX2; rho0 a (product) Gaussian."""
    if dim == 1:
        grid = Grid(*BOX, 100)
        laws = [Gaussian(1.0, 0.5)]
    else:
        grid = Grid(*BOX2, (48, 48))
        laws = [Gaussian(1.0, 0.5), Gaussian(-0.5, 0.7)]
    energy = nonlocal_energy(grid)
    fp = FokkerPlanck(grid, energy, diffusion=diffusion, rate=rate, flux=flux, scheme=scheme)
    return grid, fp, np.asarray(grid.density_of_laws(laws))


@pytest.mark.parametrize(
    ("dim", "flux", "scheme"),
    [
        (1, "upwind", "explicit"),
        (1, "upwind", "imex"),
        (2, "upwind", "explicit"),
        pytest.param(2, "upwind", "imex", marks=pytest.mark.slow),
        pytest.param(1, "muscl", "explicit", marks=pytest.mark.slow),
        pytest.param(1, "muscl", "imex", marks=pytest.mark.slow),
        pytest.param(2, "muscl", "explicit", marks=pytest.mark.slow),
        pytest.param(2, "muscl", "imex", marks=pytest.mark.slow),
    ],
)
def test_mass_and_positivity(dim, flux, scheme):
    """300 steps at cfl = 1/2 of the full PDE (nonlocal energy, D = 0.1, alpha = 2): the
    mass stays at 1 to round-off (flux form, mean-zero reaction) and rho >= 0 (a
    forward-Euler stage is a convex combination at cfl <= 1), while F falls by > 0.1.
    Explicit: measured <= 2.2e-16 relative. Imex: the DCT round trip (jax.scipy.fft) drifts
    the sum by ~2 eps per step (measured 4e-16 per step on 48 x 48 cells, 1.7e-13 after 400
    steps), and the implicit solve leaves round-off negatives (~ -1e-16)."""
    grid, fp, rho0 = nonlocal_problem(dim, flux, scheme)
    steps = 300
    out = run(fp, rho0, steps=steps, cfl=0.5)
    rho = out["rho"]
    drift = abs(rho.sum() / rho0.sum() - 1.0)
    assert drift <= (1e-13 if scheme == "explicit" else steps * 4 * EPS), drift
    assert rho.min() >= (0.0 if scheme == "explicit" else -1e-14 * rho.max())
    # it moved: F fell from 0.375 to -0.003 (1-D), from 0.476 to -0.016 (2-D)
    assert free_energy(fp, rho) < free_energy(fp, rho0) - 0.1


@eqx.filter_jit
def _identity(fp: FokkerPlanck, rho0, fractions):
    f0, slope = jax.jvp(fp.free_energy, (rho0,), (fp.rhs(rho0, diffuse=True),))
    total, jump = fp.dissipation(rho0)
    dts = fractions * fp.stable_dt(rho0)
    f1 = jax.vmap(lambda dt: fp.free_energy(fp.step(rho0, dt)))(dts)
    residual = (f1 - f0) / dts + total
    return {"free": f0, "slope": slope, "total": total, "jump": jump, "residual": residual}


@pytest.mark.parametrize(
    ("flux", "scheme"),
    [
        ("upwind", "explicit"),
        pytest.param("upwind", "imex", marks=pytest.mark.slow),
        pytest.param("muscl", "explicit", marks=pytest.mark.slow),
        pytest.param("muscl", "imex", marks=pytest.mark.slow),
    ],
)
def test_energy_dissipation_identity(flux, scheme):
    """F = E + D int rho log rho with the nonlocal energy (l2 = 1/2, D = 0.1, alpha = 2) on
    100 cells. Semi-discrete: d/dt F along rhs(rho, diffuse=True) is -dissipation(rho)[0]
    exactly (jvp of F; relative 1e-10, measured 2e-13). One step: (F(rho_1) - F(rho_0)) /
    dt + dissipation(rho_0)[0] = O(dt), halving with dt (measured ratios 1.997 to 2.011 at
    dt = 1/2, 1/4, 1/8 x stable dt)."""
    _, fp, rho0 = nonlocal_problem(1, flux, scheme)
    out = jax.device_get(_identity(fp, jnp.asarray(rho0), jnp.asarray([0.5, 0.25, 0.125])))
    np.testing.assert_allclose(out["free"], free_energy(fp, rho0), rtol=1e-12)
    np.testing.assert_allclose(out["slope"], -out["total"], rtol=1e-10)
    assert out["total"] > out["jump"] > 0.0  # both transport and reaction dissipate here
    residual = out["residual"]
    np.testing.assert_allclose(residual[:-1] / residual[1:], 2.0, atol=0.1)
    assert abs(residual[-1]) < 1e-2 * out["total"]  # measured 1.0e-3 and 1.2e-3


def test_stable_dt_is_the_cfl_bound():
    """cfl(rho, stable_dt(rho)) = 1; an explicit run at the stable dt keeps rho >= 0, at 3x
    it blows up or goes negative (negative control). ``imex`` drops the 2 D / h^2 term
    (69 here, against ~40 for transport and reaction), so its stable dt is 2.7x larger and
    its run at that dt stays non-negative (to round-off) with its mass."""
    _, fp, rho0 = nonlocal_problem(1, "upwind", "explicit", diffusion=0.5)
    _, fpi, _ = nonlocal_problem(1, "upwind", "imex", diffusion=0.5)
    ok = run(fp, rho0, steps=200, cfl=1.0)
    np.testing.assert_allclose(ok["cfl_start"], 1.0, rtol=1e-12)
    assert np.all(np.isfinite(ok["rho"])) and ok["rho"].min() >= 0.0
    bad = run(fp, rho0, steps=200, cfl=3.0)["rho"]
    assert not (np.all(np.isfinite(bad)) and bad.min() >= 0.0)
    fine = run(fpi, rho0, steps=200, cfl=1.0)
    np.testing.assert_allclose(fine["cfl_start"], 1.0, rtol=1e-12)
    assert fine["stable_dt"] > 2.5 * ok["stable_dt"]
    rho = fine["rho"]
    assert np.all(np.isfinite(rho)) and rho.min() >= -1e-14 * rho.max()
    np.testing.assert_allclose(rho.sum(), rho0.sum(), rtol=1e-12)


def test_upwind_cfl_keeps_positivity_where_the_flow_diverges():
    """Phi = -|theta - theta_j| peaked at the centre of cell j (100 cells, h = 0.12): the
    velocity is +-1 on every face, so max|u| = 1 and stable_dt = h, and cell j empties
    through both faces; the per-cell bound (`FokkerPlanck.cfl`) counts both, so a step at
    cfl = 1 empties it exactly (a bound counting max|u| once would give -rho_j)."""
    grid = Grid(*BOX, 100)
    theta = grid.axis(0)
    fp = FokkerPlanck(grid, energy_of(grid, -np.abs(theta - theta[50])), flux="upwind")
    rho = run(fp, cells_of_gaussian(grid, 0, theta[50], 1.0), steps=1, cfl=1.0)["rho"]
    assert rho.min() >= 0.0, rho.min()


# ---------------------------------------------------------------- the grid


def test_density_of_laws_is_the_exact_cell_average():
    """Cell averages of a product law integrate to 1 and their partial sums are the CDF at
    the edges (normalised to the box); in 2-D the marginals are the axes' laws."""
    grid = Grid(-3.0, 3.0, 30)
    rho = np.asarray(grid.density_of_laws([Gaussian(0.4, 0.8)]))
    assert np.isclose(rho.sum() * grid.volume, 1.0, rtol=0, atol=1e-14)
    cdf = ndtr((grid.edges(0) - 0.4) / 0.8)
    want = (cdf[1:] - cdf[0]) / (cdf[-1] - cdf[0])
    np.testing.assert_allclose(np.cumsum(rho) * grid.h[0], want, rtol=0, atol=1e-14)
    grid2 = Grid((-3.0, -1.0), (3.0, 2.0), (12, 12))  # h = (1/2, 1/4)
    rho2 = np.asarray(grid2.density_of_laws([Gaussian(0.0, 1.0), Uniform(-0.5, 1.0)]))
    assert rho2.shape == (12, 12)
    assert np.isclose(rho2.sum() * grid2.volume, 1.0, rtol=0, atol=1e-14)
    # the uniform marginal: 1/1.5 on the cells inside [-0.5, 1] (edges fall on cell edges)
    marginal = rho2.sum(axis=0) * grid2.h[0]
    inside = np.abs(grid2.axis(1) - 0.25) < 0.75
    np.testing.assert_allclose(marginal[inside], 1 / 1.5, rtol=1e-12)
    np.testing.assert_allclose(marginal[~inside], 0.0, atol=1e-15)
    gauss = cells_of_gaussian(grid2, 0, 0.0, 1.0)
    gauss = gauss / (gauss.sum() * grid2.h[0])
    np.testing.assert_allclose(rho2.sum(axis=1) * grid2.h[1], gauss, rtol=1e-12)


def test_point_masses_and_outside_points_are_refused():
    grid = Grid(*BOX2, (8, 8))
    with pytest.raises(ConfigError, match="constant law"):
        grid.density_of_laws([Gaussian(0.0, 1.0), Constant(1.0)])
    with pytest.raises(ConfigError, match="std 0"):
        grid.density_of_laws([Gaussian(0.0, 0.0), Gaussian(0.0, 1.0)])
    with pytest.raises(ConfigError, match="outside the grid"):
        grid.density_of_points(np.array([[0.0, 0.0], [4.5, 0.0]]))
    # inside: the weighted histogram, mass 1 (cells of width 1: centres -3.5 .. 3.5)
    pts = np.array([[-3.9, 0.1], [0.1, 0.1], [3.9, 3.9]])
    rho = np.asarray(grid.density_of_points(pts, weights=np.array([1.0, 1.0, 2.0])))
    np.testing.assert_allclose(rho.sum() * grid.volume, 1.0, rtol=1e-15)
    np.testing.assert_allclose(rho[[0, 4, 7], [4, 4, 7]] * grid.volume, [0.25, 0.25, 0.5])


def test_points_outside_a_ball_are_refused():
    grid = Grid((-2.0, -2.0), (2.0, 2.0), (8, 8), bounded=True, radius=2.0)
    with pytest.raises(ConfigError):
        grid.density_of_points(np.array([[1.9, 1.9], [0.0, 0.0]]))


def test_boundary_mass():
    """The outermost cells of [-4, 4] (16 cells) hold ~0 of N(0, 0.5^2) (its mass beyond
    |theta| = 3.5 is 2.6e-12) and 2/16 of the uniform law on the box; in 2-D the outer ring
    holds 1 - (14/16)^2 of it."""
    grid = Grid(-4.0, 4.0, 16)
    boundary_mass = eqx.filter_jit(Grid.boundary_mass)  # one compile, not one per op
    assert float(boundary_mass(grid, grid.density_of_laws([Gaussian(0.0, 0.5)]))) < 1e-11
    wide = grid.density_of_laws([Uniform(-4.0, 4.0)])
    np.testing.assert_allclose(float(boundary_mass(grid, wide)), 2 / 16, rtol=1e-12)
    grid2 = Grid(*BOX2, (16, 16))
    wide2 = grid2.density_of_laws([Uniform(-4.0, 4.0), Uniform(-4.0, 4.0)])
    np.testing.assert_allclose(float(boundary_mass(grid2, wide2)), 1 - (14 / 16) ** 2, rtol=1e-12)


def test_bad_solver_options_are_refused():
    grid = Grid(*BOX, 8)
    energy = confined(grid, 1.0)
    for kwargs, field in [
        ({"flux": "centered"}, "flux"),
        ({"scheme": "rk4"}, "scheme"),
        ({"diffusion": -0.1}, "diffusion"),
        ({"rate": -1.0}, "birth-death rate"),
    ]:
        with pytest.raises(ConfigError, match=field):
            FokkerPlanck(grid, energy, **kwargs)
