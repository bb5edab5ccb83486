"""`mfnn.pde.control`: Cole-Hopf against a direct HJB scheme, the Foellmer marginal formula,
the cost identity inf J = beta F(mu*) = control cost + beta R, the Schroedinger bridge
against the FP/HJB marginals, and a negative control (the greedy flow) that must fail the
identities the optimal control passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError
from mfnn.pde import Grid, SampledEnergy
from mfnn.pde import control as C

jax.config.update("jax_enable_x64", True)

BETA, TAU = 1.0, 0.25


def energy(grid):
    """R(rho) = (1/2) sum_k w_k (f(x_k) - y_k)^2, f = int erf(w x) drho, 8 Gauss-Hermite
    nodes of N(0, 1), teacher 0.6 erf(2 x) + 0.4 erf(-0.7 x)."""
    x, wts = np.polynomial.hermite_e.hermegauss(8)
    wts = wts / wts.sum()
    y = 0.6 * jax.scipy.special.erf(2.0 * x) + 0.4 * jax.scipy.special.erf(-0.7 * x)
    feats = jax.scipy.special.erf(np.outer(x, grid.axis(0)))
    return SampledEnergy(
        features=jnp.asarray(feats),
        y=jnp.asarray(y),
        weights=jnp.asarray(wts),
        confinement=jnp.zeros(grid.size),
    )


@pytest.fixture(scope="module")
def solved():
    out = {}
    for n in (41, 81):
        grid = Grid([-3.0], [3.0], [n])
        e = energy(grid)
        out[n] = (grid, e, C.solve_control(e, grid, BETA, TAU, 2 * n, tol=1e-11))
    return out


@pytest.mark.slow  # 7 s; the quadratic terminal cost (exact Cole-Hopf answer) stays by default
def test_cole_hopf_solves_the_hjb_and_the_direct_scheme_converges_to_it():
    errs = []
    for n in (41, 81):
        grid = Grid([-3.0], [3.0], [n])
        w = grid.axis(0)
        g = jnp.asarray(0.5 * np.sin(1.5 * w) + 0.1 * w**2)
        times = np.linspace(0, 1, 2 * n + 1)
        ch = C.cole_hopf(grid, g, TAU, times)
        np.testing.assert_allclose(ch["V"][-1], g, atol=1e-12)  # terminal condition
        # u* = -V' on the faces
        np.testing.assert_allclose(ch["u"], -np.diff(ch["V"], axis=-1) / grid.h[0], atol=1e-10)
        v = C.hjb_godunov(grid, g, TAU, 2 * n)
        errs.append(float(jnp.max(jnp.abs(v - ch["V"]))))
    # first order in (h, dt): halving both halves the error
    assert errs[1] < 0.65 * errs[0] and errs[1] < 0.02, errs  # measured 0.0246 -> 0.0145


def test_cole_hopf_on_a_quadratic_terminal_cost_is_gaussian():
    # g = w^2 / 2: h(w, t) ∝ exp(-w^2 / (2 (tau + tau (1 - t)) ) ... ) in closed form:
    # h = E exp(-(w + s Z)^2 / (2 tau)), s^2 = tau (1 - t)  =>  V = tau/2 log(1 + s^2/tau)
    #     + w^2 / (2 (1 + s^2 / tau)) ... up to a constant: V'(w) = w / (2 - t)
    grid = Grid([-6.0], [6.0], [601])
    w = grid.axis(0)
    ch = C.cole_hopf(grid, jnp.asarray(0.5 * w**2), TAU, [0.0, 0.5])
    face = 0.5 * (w[:-1] + w[1:])
    inner = np.abs(face) < 2
    for k, t in enumerate((0.0, 0.5)):
        np.testing.assert_allclose(ch["u"][k][inner], -face[inner] / (2 - t), atol=2e-3)


@pytest.mark.slow
def test_foellmer_marginals_of_the_fp_hjb_solve(solved):
    # rho_t(w) = N(0, tau t)(w) h(w, t) / h(0, 0): first order in h
    errs = []
    for grid, _, r in solved.values():
        w = grid.axis(0)
        err = 0.0
        for t in (0.5, 1.0):
            k = int(round(t * (len(r.times) - 1)))
            h = C.cole_hopf(grid, r.g, TAU, [t])["h"][0]
            exact = np.exp(-(w**2) / (2 * TAU * t)) * np.asarray(h)
            exact = exact / (exact.sum() * grid.h[0])
            err = max(err, float(np.sum(np.abs(r.rho[k] - exact)) * grid.h[0]))  # L1
        errs.append(err)
    assert errs[1] < 0.7 * errs[0], errs
    assert errs[1] < 0.05, errs


@pytest.mark.slow
def test_fixed_point_reaches_mu_star_and_the_cost_identity_holds(solved):
    w2, cost = [], []
    for grid, e, r in solved.values():
        assert r.converged and r.cfl <= 1
        np.testing.assert_allclose(r.rho.sum(axis=1) * grid.h[0], 1.0, atol=1e-12)  # mass
        mu = C.entropic_gibbs(e, grid, BETA, TAU)
        assert mu.converged
        w2.append(C.w2_grid(grid, r.rho[-1], mu.rho))
        free = C.entropic_free_energy(e, grid, BETA, TAU, mu.rho)
        cost.append(abs(r.J - BETA * free["F"]) / (BETA * free["F"]))
        # the control cost is tau KL(mu* || gamma_tau); the terminal cost beta R(mu_1)
        assert r.control_cost == pytest.approx(TAU * free["kl"], rel=0.05)
        assert r.terminal_cost == pytest.approx(BETA * free["risk"], rel=0.02)
    assert w2[1] < 0.7 * w2[0] and w2[1] < 0.03, w2
    assert cost[1] < cost[0] and cost[1] < 0.01, cost


@pytest.mark.slow
def test_mu_star_is_the_gibbs_state_of_the_entropic_free_energy(solved):
    grid, e, _ = solved[41]
    mu = np.asarray(C.entropic_gibbs(e, grid, BETA, TAU, tol=1e-12).rho)
    psi = np.asarray(e.risk_variation(jnp.asarray(mu) * grid.h[0]))
    gibbs = np.asarray(C.gaussian_cells(grid, TAU)) * np.exp(-BETA / TAU * psi)
    np.testing.assert_allclose(mu, gibbs / (gibbs.sum() * grid.h[0]), rtol=1e-9)
    # and it minimises F: a perturbation raises F
    f0 = C.entropic_free_energy(e, grid, BETA, TAU, mu)["F"]
    bump = mu * (1 + 0.1 * np.sin(grid.axis(0)))
    bump = bump / (bump.sum() * grid.h[0])
    assert C.entropic_free_energy(e, grid, BETA, TAU, bump)["F"] > f0


@pytest.mark.slow
def test_schrodinger_bridge_has_the_fp_hjb_marginals(solved):
    errs = []
    for grid, _, r in solved.values():
        times = [0.25, 0.5, 1.0]
        sb = C.schrodinger_bridge(grid, C.point_mass(grid), r.rho[-1], TAU, times)
        assert sb.marginal_error < 1e-10
        assert sb.cost == pytest.approx(r.control_cost, rel=0.05)
        idx = [int(round(t * (len(r.times) - 1))) for t in times]
        errs.append(max(C.w2_grid(grid, sb.rho[i], r.rho[k]) for i, k in enumerate(idx)))
    assert errs[1] < 0.7 * errs[0] and errs[1] < 0.03, errs


def test_bridge_between_spread_laws_fits_both_marginals():
    grid = Grid([-3.0], [3.0], [61])
    w = grid.axis(0)
    a = np.exp(-((w + 1) ** 2) / 0.2)
    b = np.exp(-((w - 1) ** 2) / 0.5) + 0.5 * np.exp(-((w + 0.5) ** 2) / 0.1)
    a, b = (x / (x.sum() * grid.h[0]) for x in (a, b))
    sb = C.schrodinger_bridge(grid, a, b, TAU, [0.0, 0.5, 1.0], tol=1e-11)
    assert sb.marginal_error < 1e-10 and sb.cost > 0
    np.testing.assert_allclose(sb.rho[0], a, atol=1e-9)
    np.testing.assert_allclose(sb.rho[-1], b, atol=1e-9)
    mean = lambda r: float(np.sum(r * w) * grid.h[0])  # noqa: E731
    # the mean moves linearly along a Schroedinger bridge with Brownian reference
    assert mean(sb.rho[1]) == pytest.approx(0.5 * (mean(a) + mean(b)), abs=0.02)


@pytest.mark.slow
def test_negative_control_the_greedy_flow_fails_what_the_control_passes(solved):
    grid, e, r = solved[81]
    mu = C.entropic_gibbs(e, grid, BETA, TAU).rho
    greedy, cfl = C.greedy_mckean_vlasov(e, grid, BETA, TAU, len(r.times) - 1)
    assert cfl <= 1
    w2_c, w2_g = C.w2_grid(grid, r.rho[-1], mu), C.w2_grid(grid, greedy[-1], mu)
    assert w2_g > 2 * w2_c, (w2_g, w2_c)
    # its drift is not u*: relative L2(rho_t) distance over t in (0, 1]
    drift = C.greedy_drift(e, grid, BETA, greedy)
    face = 0.5 * (r.rho[1:, :-1] + r.rho[1:, 1:])
    rel = np.sqrt(np.sum(face * (r.u[1:] - drift[1:]) ** 2) / np.sum(face * r.u[1:] ** 2))
    assert rel > 0.1, rel
    # the Foellmer formula holds for the controlled law, not for the greedy one
    h = C.cole_hopf(grid, r.g, TAU, [1.0])["h"][0]
    w = grid.axis(0)
    foellmer = np.exp(-(w**2) / (2 * TAU)) * np.asarray(h)
    foellmer = foellmer / (foellmer.sum() * grid.h[0])
    l1 = lambda x: float(np.sum(np.abs(x - foellmer)) * grid.h[0])  # noqa: E731
    assert l1(greedy[-1]) > 3 * l1(r.rho[-1])


def test_bad_input_is_refused():
    grid = Grid([-3.0], [3.0], [41])
    e = energy(grid)
    with pytest.raises(ConfigError, match="beta"):
        C.solve_control(e, grid, 0.0, TAU, 10)
    with pytest.raises(ConfigError, match="damping"):
        C.solve_control(e, grid, BETA, TAU, 10, damping=1.5)
    with pytest.raises(ConfigError, match="1-D grid"):
        C.point_mass(Grid([-1.0, -1.0], [1.0, 1.0], [8, 8]))
    with pytest.raises(ConfigError, match="unstable"):
        C.hjb_godunov(grid, jnp.asarray(50.0 * grid.axis(0) ** 2), TAU, 2)
