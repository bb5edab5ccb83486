"""`mfnn.diagnostics.teacher`: Example 2's symmetry statements against the exact risk of
constructed measures, the moment z-scores, the cluster distances and hitting times, the
speed ratio of decoupled atoms, the sphere W2, and the wall statistics (known answers)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import config
from mfnn.build import build
from mfnn.diagnostics import (
    cluster_distances,
    moment_zscores,
    speed_ratio,
    sphere_w2,
    vanishing_orders,
    wall_stats,
)

ODD = ("tanh", "arctan", "sigmoid")
EVEN = ("gaussian", "quadratic")


# ------------------------------------------------------------------ Example 2


def risk_and_scale(activation, student, c, alpha):
    """The quadrature population risk of the uniform measure on ``student`` against
    rho* = sum alpha_i delta_{c_i}, and R0 = (1/2) E f*^2 for scale."""
    pop = {"inputs": "gaussian", "dim": 1, "method": "quadrature", "nodes": 150}
    model = {"width": len(student), "activation": activation, "bias": False}
    cfg = config.load(
        {
            "model": model | {"train_output": False},
            "data": {"population": pop, "teacher": {"w": [[v] for v in c], "alpha": alpha}},
        }
    )
    b = build(cfg)
    obj, theta = b.dynamics.objective, jnp.asarray(student, jnp.float64)[:, None]
    return float(obj.risk(b.model, theta)), float(obj.teacher_energy())


# Constructed measures (equal-weight students, atomic teachers) with a known parity of
# nu = rho - rho*:
#   odd_diff: teacher (1, 2) with 1/2 each; student +-1, +-2: nu odd, M_1(nu) = 3/2 != 0;
#   even_diff: teacher 1/2 at 0.5, 1/4 at -0.5, 1/4 at 1.5; student (0.5, 1.5, 1, -1):
#     nu = -1/4 (d_0.5 + d_-0.5) + 1/4 (d_1 + d_-1): even;
#   odd_m1_zero: teacher (2, -1) with 1/2 each; student (2, 2, -2, -1, 1, 1): nu odd with
#     M_1(nu) = 0 (softplus's condition);
#   m2_only: teacher 1 at 1; student (0.5, sqrt(1.75)): only M_2(nu) = 0.
CASES = {
    "odd_diff": ([1.0, -1.0, 2.0, -2.0], [1.0, 2.0], [0.5, 0.5]),
    "even_diff": ([0.5, 1.5, 1.0, -1.0], [0.5, -0.5, 1.5], [0.5, 0.25, 0.25]),
    "odd_m1_zero": ([2.0, 2.0, -2.0, -1.0, 1.0, 1.0], [2.0, -1.0], [0.5, 0.5]),
    "m2_only": ([0.5, math.sqrt(1.75)], [1.0], [1.0]),
}
ZERO = {  # which activations condition (4) says have zero loss on each case
    "odd_diff": {"gaussian", "quadratic"},
    "even_diff": {"tanh", "arctan", "sigmoid"},
    "odd_m1_zero": {"gaussian", "quadratic", "softplus"},
    "m2_only": {"quadratic"},
}


@pytest.mark.parametrize("activation", EVEN + ODD + ("softplus",))
def test_example_2_parity_decides_zero_loss(activation):
    for case, (student, c, alpha) in CASES.items():
        r, r0 = risk_and_scale(activation, student, c, alpha)
        if activation in ZERO[case]:
            assert r <= 1e-13 * r0, (case, r, r0)
        else:
            assert r >= 1e-5 * r0, (case, r, r0)


@pytest.mark.parametrize(
    ("case", "activation"), [(case, a) for case in sorted(CASES) for a in sorted(ZERO[case])]
)
def test_vanishing_orders_agree_with_the_constructed_measures(case, activation):
    # where (4) holds (zero loss), every moment `vanishing_orders` names is zero
    student, c, alpha = CASES[case]
    s = moment_zscores(np.asarray(student), np.asarray(c), np.asarray(alpha), 6)
    for k in vanishing_orders(activation, 6):
        assert s["D"][k - 1] == pytest.approx(0.0, abs=1e-12), k


def test_vanishing_orders_known_answers():
    assert vanishing_orders("gaussian", 6) == [2, 4, 6]
    assert vanishing_orders("quadratic", 6) == [2]
    for a in ODD:
        assert vanishing_orders(a, 5) == [1, 3, 5]
    assert vanishing_orders("softplus", 6) == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="relu"):
        vanishing_orders("relu", 4)


def test_moment_zscores_standard_error_and_z():
    w = np.array([0.0, 1.0, 2.0, 3.0])
    s = moment_zscores(w, np.array([1.0]), np.array([1.0]), 2)
    assert s["order"] == [1, 2]
    assert s["rho"] == pytest.approx([1.5, 3.5])
    assert s["D"] == pytest.approx([0.5, 2.5])
    se1 = np.std(w, ddof=1) / 2.0
    assert s["SE"][0] == pytest.approx(se1)
    assert s["z"][0] == pytest.approx(0.5 / se1)
    # a student equal to a one-atom teacher: D = SE = 0, z = 0; one particle: SE nan
    same = moment_zscores(np.ones(3), np.ones(1), np.ones(1), 2)
    assert same["z"] == [0.0, 0.0]
    assert math.isnan(moment_zscores(np.ones(1), np.zeros(1), np.ones(1), 1)["SE"][0])


def test_standard_error_shrinks_like_inverse_sqrt_width(slope):
    # the tolerance z * SE_k is the sampling resolution of m particles: ~ m^(-1/2)
    rng = np.random.default_rng(0)
    ms = [256, 1024, 4096, 16384]
    se = [moment_zscores(rng.standard_normal(m), np.zeros(1), np.ones(1), 4)["SE"] for m in ms]
    for k in range(4):
        assert slope(ms, [s[k] for s in se]) == pytest.approx(-0.5, abs=0.08)


# ------------------------------------------------------------------ cluster distances


def _ring(center, n, radius):
    u = center / np.linalg.norm(center)
    phi = 2 * np.pi * (np.arange(n) + 0.5) / n
    return center + radius * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * [-u[1], u[0]])


def test_cluster_distances_assign_by_the_final_positions():
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    w0 = np.concatenate([_ring(c[0], 4, 0.3), _ring(c[1], 4, 0.3)])
    w = np.stack([w0, c[[0, 0, 0, 0, 1, 1, 1, 1]] + 0.1 * (w0 - c[[0] * 4 + [1] * 4])])
    d = cluster_distances(np.array([0.0, 5.0]), w, c)
    assert d["assign"].tolist() == [0] * 4 + [1] * 4
    np.testing.assert_allclose(d["D1"], [0.3, 0.03])
    np.testing.assert_allclose(d["C2"], [0.0, 0.0], atol=1e-15)
    assert "T" not in d
    # an atom no student is nearest to: nan distances and a nan hitting time
    far = cluster_distances(np.array([0.0, 5.0]), w, np.vstack([c, [[9.0, 9.0]]]), tol=0.1)
    assert np.isnan(far["D3"]).all() and math.isnan(far["T"][2])


def test_hitting_times_interpolate_and_are_nan_when_never_reached():
    # one student per atom, its distance to the atom over time: 0.3, 0.25, 0.15, 0.1
    t = np.array([0.0, 10.0, 20.0, 30.0])
    dist = np.array([0.3, 0.25, 0.15, 0.1])
    w = np.stack([np.array([[1.0 + r, 0.0], [0.0, 1.0 + 2 * r]]) for r in dist])
    c = np.eye(2)
    assert cluster_distances(t, w, c, tol=0.2)["T"] == pytest.approx([15.0, 30.0])
    assert cluster_distances(t, w, c, tol=0.25)["T"][0] == 10.0  # reaching it counts (<=)
    assert math.isnan(cluster_distances(t, w, c, tol=0.05)["T"][0])


def test_speed_ratio_of_exactly_decoupled_atoms():
    # D_i(t) = g(alpha_i t) for one profile g (linear, so the interpolated hitting times are
    # exact): T_i = T_ref / alpha_i, S = alpha_1 / alpha_2, every slowdown 1
    t, alpha, c = np.linspace(0.0, 400.0, 81), [0.8, 0.2], np.array([[1.0, 0.0], [0.0, 1.0]])
    g = 0.3 - t[:, None] * np.array(alpha) / 500  # g(s) = 0.3 - s / 500: T_ref = 50
    w = np.stack([c + np.array([[gi[0], 0.0], [gi[1], 0.0]]) for gi in g])
    T = cluster_distances(t, w, c, tol=0.2)["T"]
    assert T == pytest.approx([62.5, 250.0])
    out = speed_ratio(T, alpha, t_ref=50.0)
    assert out["speed_ratio"] == pytest.approx(4.0)
    assert out["speed_ratio_over_alpha_ratio"] == pytest.approx(1.0)
    assert out["slowdown"] == pytest.approx([1.0, 1.0])
    # no reference: no slowdown; T_1 not positive (or never reached): S is nan
    assert "slowdown" not in speed_ratio(T, alpha)
    assert math.isnan(speed_ratio([0.0, 5.0], alpha)["speed_ratio"])
    assert math.isnan(speed_ratio([math.nan, 5.0], alpha)["speed_ratio"])


# ------------------------------------------------------------------ sphere W2


def _teacher(k, d, seed):
    c = np.random.default_rng(seed).standard_normal((k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha = np.arange(1, k + 1, dtype=float)
    return c, alpha / alpha.sum()


def test_sphere_w2_is_zero_for_a_student_that_is_the_teacher():
    """Each teacher atom split over several students (same direction, masses adding up to
    alpha_i |c_i|, any split between a and |w|): W2 = 0 and no negative mass."""
    c, alpha = _teacher(3, 4, 0)
    rows = []
    for ci, ai in zip(c, alpha, strict=True):
        for share, scale in ((0.25, 2.0), (0.75, 0.5)):  # a |w| / m must total alpha_i
            rows.append(np.concatenate([[share * ai * 6 / scale], scale * ci]))
    theta = np.array(rows)
    w2, neg = sphere_w2(theta, c, alpha)
    assert w2 < 1e-6 and neg == 0.0
    theta[0, 0] *= -1  # a negative output weight: counted as negative mass
    w2, neg = sphere_w2(theta, c, alpha)
    assert neg > 0


def test_sphere_w2_known_distance_and_no_positive_mass():
    # all the student's mass on e_1, the teacher's on e_2: W2 = |e_1 - e_2| = sqrt 2
    c, alpha = np.array([[0.0, 3.0]]), np.array([1.0])
    w2, neg = sphere_w2(np.array([[1.0, 2.0, 0.0], [0.5, 1.0, 0.0]]), c, alpha)
    assert w2 == pytest.approx(math.sqrt(2)) and neg == 0.0
    w2, neg = sphere_w2(np.array([[-1.0, 1.0, 0.0]]), c, alpha)
    assert math.isnan(w2) and neg == 1.0


# ------------------------------------------------------------------ the wall


def _circle(n, radius):
    phi = 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(phi), np.sin(phi)], axis=1)


def test_wall_stats_at_a_constrained_stationary_point_and_away_from_it():
    w = _circle(8, 1.5)
    n = w / 1.5
    out = wall_stats(w, 0.2 * n, 1.5, 0.5)  # outward normal: held by the wall
    assert out["kappa"] < 1e-15 and out["held"] == pytest.approx(1.0) and out["on_wall"] == 8
    tangent = np.stack([-n[:, 1], n[:, 0]], axis=1)
    out = wall_stats(w, 0.2 * tangent, 1.5, 0.5)  # sliding along the wall
    assert out["kappa"] == pytest.approx(1.0) and out["held"] == pytest.approx(0.0)
    out = wall_stats(w, -0.2 * n, 1.5, 0.5)  # pointing inwards: leaves the wall
    assert out["kappa"] == pytest.approx(1.0) and out["held"] == 0.0
    out = wall_stats(w, 0.2 * (n + 0.1 * tangent), 1.5, 0.5)  # a 10 % tangential part
    assert out["kappa"] == pytest.approx(0.1 / np.sqrt(1.01))


def test_wall_set_is_one_step_deep_and_interior_speed_is_reported():
    # a particle bouncing within dt |v| of the wall counts as held; a deeper one does not
    w = np.array([[1.45, 0.0], [0.0, 1.0]])
    v = np.array([[0.2, 0.0], [0.0, 0.2]])
    out = wall_stats(w, v, 1.5, 0.5)  # R - |w_1| = 0.05 <= 0.1; R - |w_2| = 0.5 > 0.1
    assert out["on_wall"] == 1 and out["kappa"] < 1e-15
    assert out["held"] == pytest.approx(0.5) and out["interior_rms_speed"] == pytest.approx(0.2)
    assert out["free_rms_speed"] == pytest.approx(0.2)
    assert np.isnan(wall_stats(w[1:], v[1:], 1.5, 0.5)["kappa"])  # nobody on the wall
