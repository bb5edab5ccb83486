"""`mfnn.pde.compare`: W2 between particles and grid densities against known answers."""

import math

import jax
import numpy as np
import pytest
from scipy.special import ndtr

from mfnn.errors import ConfigError
from mfnn.pde.compare import cell_atoms, loss_gap, w2_grids, w2_particles_grid
from mfnn.pde.grid import Grid

jax.config.update("jax_enable_x64", True)


def gaussian_density(grid, mean, std):
    e = grid.edges(0)
    p = np.diff(ndtr((e - mean) / std))
    return p / (p.sum() * grid.volume)


def test_two_gaussians_match_the_closed_form_to_second_order():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    exact = (0.3 - (-0.2)) ** 2 + (0.5 - 0.8) ** 2
    errs = []
    for n in (100, 200, 400):
        g = Grid([-8.0], [8.0], [n])
        a, b = gaussian_density(g, 0.3, 0.5), gaussian_density(g, -0.2, 0.8)
        errs.append(abs(w2_grids(g, a, g, b, squared=True) - exact))
    orders = np.log2(np.asarray(errs[:-1]) / np.asarray(errs[1:]))
    assert np.all(orders > 1.7), (errs, orders)  # O(h^2)
    assert errs[-1] < 1e-4


def test_grids_of_different_cells_and_a_shift():
    ga, gb = Grid([-6.0], [6.0], [300]), Grid([-5.0], [7.0], [257])
    a, b = gaussian_density(ga, 0.0, 0.7), gaussian_density(gb, 1.0, 0.7)
    assert w2_grids(ga, a, gb, b) == pytest.approx(1.0, abs=2e-3)
    assert w2_grids(ga, a, ga, a) == pytest.approx(0.0, abs=1e-12)


def test_uniform_density_against_points_is_exact():
    g = Grid([-1.0], [1.0], [8])
    rho = np.full(8, 0.5)
    # one atom at c: W2^2 = E (X - c)^2 = 1/3 + c^2
    for c in (0.0, 0.4, -2.0):
        assert w2_particles_grid(np.array([c]), g, rho, squared=True) == pytest.approx(1 / 3 + c**2)
    # m points at the midpoints of the quantiles u_j = (j - 1/2)/m: W2^2 = 1/(3 m^2)
    m = 10
    x = 2 * (np.arange(m) + 0.5) / m - 1
    assert w2_particles_grid(x, g, rho, squared=True) == pytest.approx(1 / (3 * m**2), rel=1e-10)
    # weights: the two atoms at +-1/2 with weights 1/2 each are the optimal 2-point approx
    w = w2_particles_grid(np.array([-0.5, 0.5]), g, rho, np.array([0.5, 0.5]), squared=True)
    assert w == pytest.approx(1 / 12)


def test_samples_converge_at_rate_m_to_the_minus_half():
    g = Grid([-1.0], [1.0], [64])
    rho = 0.5 * (1 + 0.5 * g.axis(0))  # a density bounded below: J_2 < infinity
    rho = rho / (rho.sum() * g.volume)
    rng = np.random.default_rng(0)
    widths, rms = [100, 1000, 10000], []
    edges, cdf = g.edges(0), np.concatenate([[0.0], np.cumsum(rho * g.volume)])
    for m in widths:
        vals = [w2_particles_grid(np.interp(rng.random(m), cdf, edges), g, rho) for _ in range(16)]
        rms.append(math.sqrt(np.mean(np.square(vals))))
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert abs(slope + 0.5) < 0.1, (rms, slope)


def test_a_shifted_cloud_gives_the_shift():
    g = Grid([-6.0], [6.0], [400])
    rho = gaussian_density(g, 0.0, 0.6)
    edges, cdf = g.edges(0), np.concatenate([[0.0], np.cumsum(rho * g.volume)])
    x = np.interp((np.arange(4000) + 0.5) / 4000, cdf, edges)  # quantile points of rho
    base = w2_particles_grid(x, g, rho)
    assert base < 5e-3  # the tails of the quantile grid
    assert w2_particles_grid(x + 0.7, g, rho) == pytest.approx(0.7, abs=base)  # triangle inequality


def test_2d_atoms_match_the_1d_exact_value_for_a_product():
    # a product of a shifted factor: W2^2 = shift^2 on both estimates; atoms within h/sqrt(12)
    g = Grid([-3.0, -3.0], [3.0, 3.0], [24, 24])
    e = g.edges(0)
    p = np.diff(ndtr(e / 0.6))
    rho = np.multiply.outer(p, p) / (p.sum() ** 2 * g.volume)
    centres, mass = cell_atoms(g, rho)
    assert mass.sum() == pytest.approx(1.0)
    pts = centres + np.array([0.5, 0.0])
    assert w2_particles_grid(pts, g, rho, mass) == pytest.approx(0.5, abs=1e-9)
    s = w2_particles_grid(pts, g, rho, mass, method="sinkhorn", epsilon=1e-3)
    assert s == pytest.approx(0.5, abs=0.02)


def test_loss_gap_and_bad_input():
    gap = loss_gap([0.0, 1.0, 2.0], [1.0, 0.5, 0.25], [0.0, 2.0], [0.5, 0.25], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(gap, [0.5, 0.125, 0.0])
    with pytest.raises(ConfigError, match="times"):
        loss_gap([0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [2.0])
    g = Grid([-1.0], [1.0], [8])
    with pytest.raises(ConfigError, match="mass"):
        w2_particles_grid(np.zeros(3), g, np.ones(8))
    with pytest.raises(ConfigError, match="shape"):
        w2_particles_grid(np.zeros(3), g, np.full(9, 0.5))
    with pytest.raises(ConfigError, match="weights"):
        w2_particles_grid(np.zeros(3), g, np.full(8, 0.5), np.ones(3))
    with pytest.raises(ConfigError, match="particles"):
        w2_particles_grid(np.zeros((3, 2)), g, np.full(8, 0.5))
    with pytest.raises(ConfigError, match="method"):
        w2_particles_grid(np.zeros(3), g, np.full(8, 0.5), method="sliced")


def test_cells_of_negligible_mass_do_not_break_the_quantile_function():
    """A PDE density (birth-death flow at t = 1, 400 cells of [-5, 5]) whose tail cells hold
    1e-24 .. 1e-16, below the resolution of the running mass sum near 1: points at its own
    quantiles are close to it (0.026, 0.0066 at m = 100, 1000). A slope h / mass for those
    cells instead of h over the rounded increment of the sum made Q(1) overshoot and gave
    W2 = 0.11 at every m."""
    import pathlib

    rho = np.load(pathlib.Path(__file__).parent / "data" / "birth_death_density_t1.npy")
    grid = Grid([-5.0], [5.0], [400])
    cdf = np.concatenate([[0.0], np.cumsum(rho) * grid.volume])
    for m in (100, 1000):
        u = (np.arange(m) + 0.5) / m
        points = np.interp(u, cdf / cdf[-1], grid.edges(0))
        assert w2_particles_grid(points[:, None], grid, rho) < 0.05, m  # 0.026, 0.0066
