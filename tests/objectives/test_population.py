"""The population risk: closed form against quadrature against Monte Carlo, the
decomposition, the first variation as a directional derivative, finite velocities at
coincident and antiparallel neurons, and the bad-input messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, GaussianInputs, Teacher, TwoLayer, UniformBox
from mfnn.objectives import PopulationRisk
from tiers import first_by_default

# relu's kink makes Gauss-Hermite converge like 1/nodes (pointwise errors ~1e-2 at 96
# nodes; `test_relu_quadrature_converges_to_the_closed_form`); erf is smooth (spectral)
RTOL = {"relu": 1e-2, "erf": 1e-6}


def _problem(key, activation, d=2, m=6, k=3, train_output=True):
    kw, kt, ka = jax.random.split(key, 3)
    teacher = Teacher(
        np.asarray(jax.random.normal(kt, (k, d))),
        alpha=np.arange(1, k + 1) / (k * (k + 1) / 2),
        activation=activation,
    )
    net = TwoLayer(d=d, activation=activation, bias=False, train_output=train_output)
    theta = jax.random.normal(kw, (m, net.dim))
    return teacher, net, theta


def _pair(teacher, net, nodes=96):
    inputs = GaussianInputs(teacher.w.shape[1])
    exact = PopulationRisk.make(teacher, inputs, "closed_form", model=net)
    quad = PopulationRisk.make(teacher, inputs, "quadrature", model=net, nodes=nodes)
    return exact, quad


@pytest.mark.parametrize("activation", first_by_default(["relu", "erf"]))
def test_closed_form_matches_quadrature(key, activation):
    teacher, net, theta = _problem(key, activation)
    exact, quad = _pair(teacher, net)
    rtol = RTOL[activation]
    np.testing.assert_allclose(exact.risk(net, theta), quad.risk(net, theta), rtol=rtol)
    # moderate norms: erf(u.x) with |u| >> 1 is a near-step that Gauss-Hermite resolves slowly
    pts = 0.6 * jax.random.normal(jax.random.fold_in(key, 9), (5, net.dim))

    def close(got, want, factor=1.0):
        scale = float(jnp.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=factor * rtol * scale)

    close(exact.potential(net, pts), quad.potential(net, pts))
    close(exact.interaction(net, theta, pts), quad.interaction(net, theta, pts))
    close(exact.first_variation(net, theta, pts), quad.first_variation(net, theta, pts), 10)
    ve, le = exact.velocity(net, theta)
    vq, lq = quad.velocity(net, theta)
    np.testing.assert_allclose(le, lq, rtol=rtol)
    close(ve, vq, 10)


def test_relu_quadrature_converges_to_the_closed_form(key):
    """The closed form is the limit: the quadrature error falls at least like 1/nodes."""
    teacher, net, theta = _problem(key, "relu")
    pts = jax.random.normal(jax.random.fold_in(key, 9), (5, net.dim))
    exact = PopulationRisk.make(teacher, GaussianInputs(2), "closed_form", model=net)
    want = exact.potential(net, pts)
    errs = []
    for nodes in (24, 48, 96):
        quad = PopulationRisk.make(teacher, GaussianInputs(2), "quadrature", nodes=nodes)
        errs.append(float(jnp.abs(quad.potential(net, pts) - want).max()))
    assert errs[1] < 0.6 * errs[0] and errs[2] < 0.6 * errs[1], errs


@pytest.mark.parametrize("activation", first_by_default(["relu", "erf"]))
def test_closed_form_within_monte_carlo_confidence(key, activation):
    """d = 5 (no quadrature): the exact risk lies within 5 standard errors of a Monte
    Carlo mean of (1/2)(f - f*)^2 over 2e5 fresh Gaussian inputs."""
    teacher, net, theta = _problem(key, activation, d=5, m=8, k=2)
    exact = PopulationRisk.make(teacher, GaussianInputs(5), "closed_form", model=net)
    x = jax.random.normal(jax.random.fold_in(key, 3), (200_000, 5))
    sq = 0.5 * (net.predict(theta, x) - teacher(x)) ** 2
    mean, se = float(jnp.mean(sq)), float(jnp.std(sq) / np.sqrt(sq.size))
    assert abs(float(exact.risk(net, theta)) - mean) < 5 * se
    # and the MC objective of mfnn itself (evaluation sample) agrees the same way
    mc = PopulationRisk.make(
        teacher,
        GaussianInputs(5),
        "monte_carlo",
        model=net,
        eval_samples=200_000,
        key=jax.random.fold_in(key, 4),
    )
    assert abs(float(exact.risk(net, theta)) - float(mc.risk(net, theta))) < 5 * se * 1.5


@pytest.mark.parametrize("method", ["closed_form", "quadrature"])
def test_decomposition_sums_to_the_risk(key, method):
    teacher, net, theta = _problem(key, "erf")
    obj = PopulationRisk.make(teacher, GaussianInputs(2), method, model=net, nodes=96)
    parts = obj.decomposition(net, theta)
    np.testing.assert_allclose(
        parts["R0"] + parts["potential"] + parts["interaction"], obj.risk(net, theta), rtol=1e-12
    )
    # the direct definition, term by term, by quadrature of f and f*
    quad = PopulationRisk.make(teacher, GaussianInputs(2), "quadrature", nodes=96)
    f, y, w = net.predict(theta, quad.x), quad.y, quad.weights
    np.testing.assert_allclose(parts["R0"], 0.5 * jnp.sum(w * y**2), rtol=1e-6)
    np.testing.assert_allclose(parts["potential"], -jnp.sum(w * y * f), rtol=1e-6)
    np.testing.assert_allclose(parts["interaction"], 0.5 * jnp.sum(w * f**2), rtol=1e-6)
    assert float(parts["R0"]) > 0 and float(parts["interaction"]) > 0


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_first_variation_is_the_derivative_along_a_mixture(key, activation):
    """d/deps R((1 - eps) mu + eps nu) at 0 = int Phi dnu - int Phi dmu (mean_field),
    the left side by finite differences of the quadrature risk of
    f_eps = (1 - eps) f_mu + eps f_nu, the right side from the closed-form Phi."""
    teacher, net, theta = _problem(key, activation)
    exact, quad = _pair(teacher, net, nodes=128)
    nu = 1.5 * jax.random.normal(jax.random.fold_in(key, 5), (4, net.dim))
    f_mu, f_nu = net.predict(theta, quad.x), net.predict(nu, quad.x)

    def risk(eps):
        return 0.5 * jnp.sum(quad.weights * ((1 - eps) * f_mu + eps * f_nu - quad.y) ** 2)

    h = 1e-5
    fd = (risk(h) - risk(-h)) / (2 * h)
    phi = exact.first_variation(net, theta, jnp.concatenate([nu, theta]))
    want = jnp.mean(phi[: nu.shape[0]]) - jnp.mean(phi[nu.shape[0] :])
    np.testing.assert_allclose(fd, want, rtol=RTOL[activation] * 10, atol=1e-9)


@pytest.mark.parametrize("scaling", first_by_default(["mean_field", "ntk"]))
def test_velocity_is_minus_grad_first_variation(key, scaling):
    teacher, _, theta = _problem(key, "relu")
    net = TwoLayer(d=2, activation="relu", bias=False, scaling=scaling)
    obj = PopulationRisk.make(teacher, GaussianInputs(2), "closed_form", model=net, l2=0.1)
    v, _ = obj.velocity(net, theta)
    grad = jax.grad(lambda p: jnp.sum(obj.first_variation(net, theta, p)))(theta)
    np.testing.assert_allclose(v, -grad, rtol=1e-10, atol=1e-12)
    # and -m^(2 gamma - 1) dE/dtheta_j
    m = theta.shape[0]
    dE = jax.grad(lambda t: obj.energy(net, t))(theta)
    np.testing.assert_allclose(v, -(m ** (2 * net.gamma - 1)) * dE, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", first_by_default(["relu", "erf"]))
def test_velocity_finite_at_coincident_and_antiparallel_neurons(key, activation):
    teacher, net, _ = _problem(key, activation, k=2)
    w = np.asarray(teacher.w)
    # students on the teacher neurons, a duplicate, and an antiparallel one
    rows = np.stack([w[0], w[1], w[0], -w[1], 2.0 * w[0]])
    theta = jnp.asarray(np.concatenate([np.ones((5, 1)), rows], axis=1))
    exact = PopulationRisk.make(teacher, GaussianInputs(2), "closed_form", model=net)
    v, loss = exact.velocity(net, theta)
    assert np.all(np.isfinite(np.asarray(v))) and np.isfinite(float(loss))
    # the kernel is C^1 across t = 0 and t = pi: central differences of the closed-form
    # risk give the same gradient (v = -m dR/dtheta_j)
    m, h = theta.shape[0], 1e-6
    fd = np.zeros(theta.shape)
    for j in range(theta.shape[0]):
        for c in range(theta.shape[1]):
            e = jnp.zeros_like(theta).at[j, c].set(h)
            fd[j, c] = (exact.risk(net, theta + e) - exact.risk(net, theta - e)) / (2 * h)
    np.testing.assert_allclose(v, -m * fd, rtol=1e-6, atol=1e-8)


def test_student_equal_to_teacher_has_zero_risk_and_velocity(key):
    """rho = rho*: a student that is the teacher (k atoms, m = k, weights alpha folded
    into a) is a global minimum: R = 0 and v = 0 (to rounding)."""
    teacher, _, _ = _problem(key, "relu", k=3)
    net = TwoLayer(d=2, activation="relu", bias=False)
    k = teacher.w.shape[0]
    theta = jnp.concatenate([(k * teacher.alpha)[:, None], teacher.w], axis=1)
    obj = PopulationRisk.make(teacher, GaussianInputs(2), "closed_form", model=net)
    v, loss = obj.velocity(net, theta)
    assert abs(float(loss)) < 1e-14
    assert float(jnp.abs(v).max()) < 1e-7


def test_quadrature_error_estimate_tracks_the_true_error(key):
    """|R_q - R_2q| is the reported error: it matches |R_q - R_exact| (R_exact by a rule
    with 128 nodes) within a factor 1.5 and falls with q."""
    teacher = Teacher([[1.0, 0.5], [-0.3, 1.2]], alpha=[0.6, 0.4], activation="tanh")
    net = TwoLayer(d=2, activation="tanh", bias=True)
    theta = jax.random.normal(key, (6, net.dim))
    law = GaussianInputs(2)
    best = PopulationRisk.make(teacher, law, "quadrature", nodes=128).risk(net, theta)
    errs = []
    for nodes in (6, 10):
        obj = PopulationRisk.make(teacher, law, "quadrature", model=net, nodes=nodes)
        est, true = float(obj.quadrature_error(net, theta)), abs(float(obj.risk(net, theta) - best))
        assert true / 1.5 <= est <= 1.5 * true, (nodes, est, true)
        errs.append(est)
    assert errs[1] < errs[0] / 4


def test_uniform_inputs_by_quadrature_match_monte_carlo(key):
    teacher = Teacher([[1.0], [-0.5]], alpha=[0.7, 0.3], activation="tanh")
    net = TwoLayer(d=1, activation="tanh", bias=True)
    theta = jax.random.normal(key, (5, net.dim))
    law = UniformBox(1, -2.0, 1.0)
    quad = PopulationRisk.make(teacher, law, "quadrature", model=net, nodes=30)
    x = law.sample(jax.random.fold_in(key, 1), 400_000, jnp.float64)
    sq = 0.5 * (net.predict(theta, x) - teacher(x)) ** 2
    se = float(jnp.std(sq)) / np.sqrt(sq.size)
    assert abs(float(quad.risk(net, theta)) - float(jnp.mean(sq))) < 5 * se


# ------------------------------------------------------------------ bad input


def test_closed_form_rejects_what_it_does_not_cover():
    teacher = Teacher([[1.0, 0.0]], activation="relu")
    gauss = GaussianInputs(2)
    with pytest.raises(ConfigError, match=r"model.bias"):
        PopulationRisk.make(teacher, gauss, "closed_form", model=TwoLayer(d=2, bias=True))
    with pytest.raises(ConfigError, match=r"relu.*erf|erf.*relu"):
        PopulationRisk.make(
            Teacher([[1.0, 0.0]], activation="tanh"),
            gauss,
            "closed_form",
            model=TwoLayer(d=2, activation="tanh", bias=False),
        )
    with pytest.raises(ConfigError, match=r"gaussian"):
        PopulationRisk.make(teacher, UniformBox(2), "closed_form")
    with pytest.raises(ConfigError, match=r"data.population.dim"):
        PopulationRisk.make(teacher, GaussianInputs(3), "closed_form")
    with pytest.raises(ConfigError, match=r"d <= 3|dim"):
        PopulationRisk.make(Teacher([[1.0] * 4]), GaussianInputs(4), "quadrature")
    with pytest.raises(ConfigError, match=r"data.population.method"):
        PopulationRisk.make(teacher, gauss, "simpson")
