"""The Hessian of the energy in particle space (`mfnn.diagnostics.hessian`).

Known answers: a quadratic energy (random features: E is quadratic in a, H = Phi^T Phi /
(n m^2) + lambda/m exactly), the origin of a tanh network (a saddle with rates +-|E[x y]|);
identities: Hessian-vector products against ``jax.hessian``, Lanczos against ``eigh``, the
rates against the Jacobian of the run's own velocity, the homogeneity zero modes; a student
interpolated to zero loss is a degenerate minimum with exactly n nonzero rates; the CLI on a
tiny run directory, its bad input named.
"""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mfnn import ConfigError, DataSet, GradientFlow, Langevin, Temperature, TwoLayer
from mfnn.cli import app
from mfnn.diagnostics.hessian import (
    classify,
    dense_hessian,
    energy_gradient,
    hessian_vector_products,
    lanczos_extremes,
    particle_hessian,
    rate_scale,
    symmetry_directions,
)
from mfnn.objectives import EmpiricalRisk, Exact, FullBatch, ZeroRisk


def flow(data, l2=0.0, **net):
    net = TwoLayer(**({"d": data.x.shape[1]} | net))
    return GradientFlow(net, EmpiricalRisk(data, l2), FullBatch(data))


def dataset(key, n=12, d=2):
    kx, ku = jax.random.split(key)
    x = jax.random.normal(kx, (n, d), jnp.float64)
    y = jnp.tanh(x @ jax.random.normal(ku, (d,), jnp.float64)) + 0.1 * x[:, 0]
    return DataSet(x, y)


@eqx.filter_jit
def _full_hessian(dyn, theta):
    m, dim = theta.shape
    return jax.hessian(lambda t: dyn.energy(t.reshape(m, dim)))(theta.reshape(-1))


def full_hessian(dyn, theta):
    """d^2 E / dtheta^2 over every column (m D, m D), the reference."""
    return np.asarray(_full_hessian(dyn, theta))


@eqx.filter_jit
def full_gradient(dyn, theta):
    """d E / dtheta over every column, flat (m D)."""
    m, dim = theta.shape
    return jax.grad(lambda t: dyn.energy(t.reshape(m, dim)))(theta.reshape(-1))


# ------------------------------------------------------------------- known answers


def test_random_features_energy_is_a_known_quadratic(key):
    # only a trains: f = (1/m) sum_j a_j tanh(w_j . x + b_j) is linear in a, so E is a
    # quadratic with H = Phi^T Phi / (n m^2) + lambda / m exactly, s H = m H (mean_field)
    data = dataset(key, n=20, d=2)
    lam, m = 0.3, 10
    dyn = flow(data, lam, activation="tanh", trainable=("a",))
    theta = jax.random.normal(jax.random.fold_in(key, 1), (m, 4), jnp.float64)
    phi = np.tanh(np.asarray(data.x) @ np.asarray(theta[:, 1:3]).T + np.asarray(theta[:, 3]))
    exact = np.linalg.eigvalsh(phi.T @ phi / (20 * m) + lam * np.eye(m))
    r = particle_hessian(dyn, theta, k=3)
    assert (r.n, r.d_trainable, r.scale) == (m, 1, float(m))  # frozen w, b: N = m
    np.testing.assert_allclose(r.eigenvalues, exact, rtol=1e-12)
    assert r.verdict == "not stationary"  # a random a is not the minimiser
    # at the minimiser a* (the ridge solution) the same quadratic is a strict minimum
    y = np.asarray(data.y)
    a_star = np.linalg.solve(phi.T @ phi / m**2 + 20 * lam / m * np.eye(m), phi.T @ y / m)
    r = particle_hessian(dyn, theta.at[:, 0].set(a_star))
    assert r.verdict == "minimum" and r.stationarity < 1e-12
    np.testing.assert_allclose(r.smallest[0], exact[0], rtol=1e-12)


@pytest.mark.parametrize(
    ("scaling", "gamma"), [("mean_field", None), ("ntk", None), ("general", 0.75)]
)
def test_l2_energy_rates_follow_the_scaling(scaling, gamma):
    # E = (lambda/2) mean_j |theta_j|^2: H = (lambda/m) I, rates s H = lambda m^(2 gamma - 2)
    m, lam = 8, 0.5
    net = TwoLayer(d=1, bias=False, scaling=scaling, gamma=gamma)
    dyn = GradientFlow(net, ZeroRisk(lam), Exact())
    r = particle_hessian(dyn, jnp.zeros((m, 2)), k=2)
    rate = lam * m ** (2 * net.gamma - 2)
    np.testing.assert_allclose(r.eigenvalues, rate, rtol=1e-13)
    assert r.verdict == "minimum" and r.n_negative == 0
    assert rate_scale(dyn, jnp.zeros((m, 2))) == pytest.approx(m ** (2 * net.gamma - 1))


def test_origin_of_a_tanh_network_is_a_saddle(key):
    # at a = w = 0 every velocity vanishes; the only second derivatives are
    # d^2 E / da_j dw_j = -(1/m) E_x[y x], so s H has the rates +-|E[x y]| (m times each)
    # and 0 (m (d - 1) times): a saddle
    data = dataset(key, n=30, d=2)
    m = 5
    dyn = flow(data, activation="tanh", bias=False)
    c = np.linalg.norm(np.asarray(data.x).T @ np.asarray(data.y) / 30)
    r = particle_hessian(dyn, jnp.zeros((m, 3)))
    expected = np.sort(np.r_[-c * np.ones(m), np.zeros(m), c * np.ones(m)])
    np.testing.assert_allclose(r.eigenvalues, expected, atol=1e-13)
    assert r.velocity_rms == 0 and r.verdict == "saddle" and r.n_negative == m


def test_interpolating_student_is_a_degenerate_minimum(key):
    # n = 4 points, N = 8 x 3 = 24 coordinates: Gauss-Newton steps (minimum-norm) reach zero
    # loss; there H = J^T J / n, so s H has exactly n positive rates and N - n zero modes
    data = dataset(key, n=4, d=1)
    dyn = flow(data, activation="tanh")
    theta = jax.random.normal(jax.random.fold_in(key, 2), (8, 3), jnp.float64)

    def residual(t):
        return dyn.model.predict(t.reshape(8, 3), data.x) - data.y

    @jax.jit
    def gauss_newton(t):
        return t - jnp.linalg.pinv(jax.jacfwd(residual)(t)) @ residual(t)

    t = theta.reshape(-1)
    for _ in range(20):
        t = gauss_newton(t)
    r = particle_hessian(dyn, t.reshape(8, 3), k=6)
    assert r.risk < 1e-25 and r.stationarity < 1e-12
    assert r.verdict == "degenerate"
    assert r.n_zero == 24 - 4 and r.n_negative == 0
    assert np.sum(r.eigenvalues > r.tol) == 4
    # negative control: the same point with the targets moved is not stationary
    moved = flow(DataSet(data.x, data.y + 0.1), activation="tanh")
    assert particle_hessian(moved, t.reshape(8, 3)).verdict == "not stationary"


# ----------------------------------------------------------------------- identities


def test_hessian_vector_products_match_jax_hessian(key):
    data = dataset(key)
    dyn = flow(data, 0.1, activation="tanh", trainable=("a", "w"))  # b frozen
    theta = jax.random.normal(jax.random.fold_in(key, 3), (6, 4), jnp.float64)
    cols = [0, 1, 2]
    full = full_hessian(dyn, theta)
    ref = full.reshape(6, 4, 6, 4)[:, cols][:, :, :, cols].reshape(18, 18)
    vs = jax.random.normal(jax.random.fold_in(key, 4), (18, 18), jnp.float64)
    np.testing.assert_allclose(hessian_vector_products(dyn, theta, vs), vs @ ref, atol=1e-12)
    np.testing.assert_allclose(dense_hessian(dyn, theta), ref, atol=1e-12)
    # central differences of the gradient: O(h^2), h ~ 6e-6
    fd = hessian_vector_products(dyn, theta, vs, finite_difference=True)
    np.testing.assert_allclose(fd, vs @ ref, atol=1e-8 * np.abs(ref).max())
    # negative control: the frozen b column has curvature of its own, which is left out
    assert np.abs(full.reshape(6, 4, 24)[:, 3]).max() > 1e-3


@eqx.filter_jit
def velocity_jacobian(dyn, theta, cols):
    """-d v / d x over the trainable columns ``cols`` (a tuple), by forward mode."""
    m, c = theta.shape[0], np.asarray(cols)

    def minus_v(x):
        t = theta.at[:, c].set(x.reshape(m, len(cols)))
        return -dyn.full_velocity(t)[0][:, c].reshape(-1)

    return jax.jacfwd(minus_v)(theta[:, c].reshape(-1))


def test_rates_are_minus_the_jacobian_of_the_velocity(key):
    # v = -s grad_x E on the trainable coordinates, so -dv/dx = s H: s = m (mean_field),
    # m^(2 gamma - 1) in general, times the drift scale of a Langevin dynamics
    data = dataset(key)
    m = 6
    theta = jax.random.normal(jax.random.fold_in(key, 5), (m, 4), jnp.float64)
    cases = [
        flow(data, 0.2, activation="tanh"),
        flow(data, 0.2, activation="softplus", scaling="general", gamma=0.75, trainable=("w", "b")),
        Langevin(flow(data, 0.2, activation="tanh"), Temperature(10.0), drift_scale=2.5),
    ]
    for dyn, s in zip(cases, (m, m**0.5, 2.5 * m), strict=True):
        cols = tuple(int(c) for c in dyn.model.trainable_columns())
        jac = np.asarray(velocity_jacobian(dyn, theta, cols))
        h = dense_hessian(dyn, theta)
        assert rate_scale(dyn, theta) == pytest.approx(s, rel=1e-14)
        np.testing.assert_allclose(jac, s * h, atol=1e-11)
        assert not np.allclose(jac, h, atol=1e-3)  # negative control: s matters


def test_lanczos_extremes_match_eigh(key):
    # N = 125 x 4 = 500: the 4 smallest and largest rates of a two-layer network to 1e-8
    data = dataset(key, n=40, d=2)
    dyn = flow(data, 0.01, activation="tanh")
    theta = jax.random.normal(jax.random.fold_in(key, 6), (125, 4), jnp.float64)
    dense = particle_hessian(dyn, theta, k=4, method="dense")
    lz = particle_hessian(dyn, theta, k=4, method="lanczos")
    assert dense.n == 500 and lz.eigenvalues is None and lz.lanczos["converged"]
    np.testing.assert_allclose(lz.smallest, dense.eigenvalues[:4], atol=1e-8)
    np.testing.assert_allclose(lz.largest, dense.eigenvalues[::-1][:4], atol=1e-8)
    assert lz.lanczos["iterations"] < 500  # converged before the Krylov space filled up
    assert lz.verdict == dense.verdict


def test_lanczos_on_a_known_spectrum_and_its_deflation():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    lam = np.r_[-2.0, -1.0, np.linspace(0.1, 5.0, 297), 9.0]
    a = (q * lam) @ q.T
    r = lanczos_extremes(lambda v: a @ v, 300, 2, tol=1e-12)
    assert r.converged
    np.testing.assert_allclose(r.smallest, [-2, -1], atol=1e-9)
    np.testing.assert_allclose(r.largest, [9, 5], atol=1e-9)
    # deflating the eigenvector of -2 leaves -1 as the smallest
    r = lanczos_extremes(lambda v: a @ v, 300, 1, deflate=q[:, :1].T)
    np.testing.assert_allclose(r.smallest, [-1], atol=1e-9)
    with pytest.raises(ConfigError, match="`k`"):
        lanczos_extremes(lambda v: a @ v, 300, 0)


def test_homogeneity_directions_are_zero_modes(key):
    # relu with a trainable and lambda = 0: u_j = (a_j, -w_j, -b_j) satisfies
    # H u_j = -(D u_j)^T grad E = -(a_j, -w_j, -b_j)-signs times g_j: 0 at a stationary point
    data = dataset(key, n=10, d=1)
    dyn = flow(data, activation="relu")
    theta = jax.random.normal(jax.random.fold_in(key, 7), (5, 3), jnp.float64)
    u = symmetry_directions(dyn, theta)
    assert u.shape == (5, 15)
    np.testing.assert_allclose(u @ u.T, np.eye(5), atol=1e-14)
    h = dense_hessian(dyn, theta)
    g = np.asarray(full_gradient(dyn, theta))
    signs = np.tile([1.0, -1.0, -1.0], 5)
    for j in range(5):
        norm = np.linalg.norm(np.r_[theta[j, 0], -theta[j, 1:]])
        block = slice(3 * j, 3 * j + 3)
        expected = np.zeros(15)
        expected[block] = -(signs * g)[block] / norm
        np.testing.assert_allclose(h @ u[j], expected, atol=1e-12)
    # the L2 weight breaks the symmetry; tanh has none
    assert symmetry_directions(flow(data, 0.1, activation="relu"), theta).shape == (0, 15)
    assert symmetry_directions(flow(data, activation="tanh"), theta).shape == (0, 15)
    # the quotient drops them: N - m eigenvalues
    r = particle_hessian(dyn, theta)
    assert r.symmetry_modes == 5 and r.eigenvalues.size == 10
    assert particle_hessian(dyn, theta, quotient=False).eigenvalues.size == 15


@pytest.mark.slow  # ~10-18 s: a dense finite-difference Hessian
def test_relu_closed_form_falls_back_to_finite_differences():
    # the closed-form relu kernel's second derivative is inf x 0 on its diagonal
    # K(w_j, w_j): the Hessian comes from central differences of the exact gradient
    from mfnn.objectives import PopulationRisk
    from mfnn.targets import GaussianInputs, Teacher

    teacher = Teacher(jnp.eye(3)[:2], jnp.array([0.6, 0.4]), activation="relu")
    net = TwoLayer(d=3, activation="relu", bias=False, train_output=False)
    obj = PopulationRisk.make(teacher, GaussianInputs(3), "closed_form", model=net)
    dyn = GradientFlow(net, obj, Exact())
    theta = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)))
    nan = hessian_vector_products(dyn, theta, jnp.eye(12))  # particle_hessian's batch shape
    assert not np.all(np.isfinite(nan))
    r = particle_hessian(dyn, theta)
    assert r.hvp == "finite_difference" and np.all(np.isfinite(r.eigenvalues))
    # consistency: the gradient moves by H dx to second order along a random dx
    dx = 1e-4 * np.random.default_rng(2).standard_normal((4, 3))
    h = dense_hessian(dyn, theta, finite_difference=True)
    central = (energy_gradient(dyn, theta + dx) - energy_gradient(dyn, theta - dx)) / 2
    dx = dx.reshape(-1)
    np.testing.assert_allclose(central, h @ dx, atol=1e-6 * np.abs(h @ dx).max())


@pytest.mark.parametrize(
    ("smallest", "largest", "stationarity", "verdict"),
    [
        (0.2, 1.0, 0.0, "minimum"),
        (5e-7, 1.0, 0.0, "degenerate"),
        (-5e-7, 1.0, 0.0, "degenerate"),
        (-2e-6, 1.0, 0.0, "saddle"),
        (-3.0, -2e-6, 0.0, "maximum"),
        (0.2, 1.0, 2e-6, "not stationary"),
        (0.2, 1.0, float("nan"), "not stationary"),
    ],
)
def test_verdict_tolerances(smallest, largest, stationarity, verdict):
    assert classify(smallest, largest, stationarity, tol=1e-6, grad_rtol=1e-6) == verdict


def test_bad_arguments_are_named(key):
    dyn = flow(dataset(key), activation="tanh")
    theta = jnp.zeros((3, 4))
    with pytest.raises(ConfigError, match=r"`k`.*\[1, 12\].*got 13"):
        particle_hessian(dyn, theta, k=13)
    with pytest.raises(ConfigError, match="`method`"):
        particle_hessian(dyn, theta, method="qr")
    with pytest.raises(ConfigError, match="`theta`"):
        particle_hessian(dyn, jnp.zeros((3, 5)))


# ------------------------------------------------------------------------------ CLI

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hessian_cli")
    cfg = {
        "model": {"width": 8, "activation": "tanh"},
        "data": {"n_train": 16, "n_test": 0},
        "dynamics": {"dt": 0.05, "steps": 40},
        "record": {"every": 10, "snapshot_every": 20},
    }
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = invoke("run", tmp / "c.yaml", "--out", tmp / "run", "--no-progress")
    assert res.exit_code == 0, res.output
    return tmp / "run"


def test_cli_writes_hessian_json(tiny_run):
    res = invoke("hessian", tiny_run, "--top", 3)
    assert res.exit_code == 0, res.output
    assert "verdict:" in res.output and "s = 8" in res.output
    out = json.loads((tiny_run / "hessian.json").read_text())
    assert out["step"] == 40 and out["t"] == pytest.approx(2.0) and out["n"] == 24
    assert len(out["smallest"]) == 3 and len(out["eigenvalues"]) == 24
    assert out["verdict"] == "not stationary"  # 40 steps from a random start
    res = invoke("hessian", tiny_run, "--step", 20, "--lanczos", "--top", 2)
    assert res.exit_code == 0, res.output
    out = json.loads((tiny_run / "hessian.json").read_text())
    assert out["step"] == 20 and out["method"] == "lanczos" and "eigenvalues" not in out


def test_cli_names_bad_input(tiny_run, tmp_path):
    res = invoke("hessian", tiny_run, "--step", 7)
    assert res.exit_code == 2 and "[0, 20, 40]" in res.output and "Traceback" not in res.output
    res = invoke("hessian", tiny_run, "--top", 25)
    assert res.exit_code == 2 and "`--top`" in res.output and "[1, 24]" in res.output
    res = invoke("hessian", tmp_path / "nothing")
    assert res.exit_code == 2 and "does not exist" in res.output
    res = invoke("hessian", tmp_path)
    assert res.exit_code == 2 and "not a run directory" in res.output
