"""The deep models' mathematics: time scaling, the continuous-depth ODE, teachers, norms.

The forward passes and velocities against an independent NumPy implementation are in
`test_deep_reference.py`; here: the velocity scaling makes f move O(1) in O(1) time at every
width N and depth L (measured, with a negative control), the wide-ResNet is the Euler
discretisation of its continuous-depth ODE (gap O(1/L), fitted), teachers and the flow norm.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.errors import ConfigError
from mfnn.measure import Gaussian
from mfnn.models import EnsembleResNet, Multilayer, TwoLayer, WideResNet
from mfnn.objectives import EmpiricalRisk, ExpandedRisk
from mfnn.stats import loglog_fit
from mfnn.targets import DataSet, ModelTeacher

jax.config.update("jax_enable_x64", True)


def _data(d, n=64, seed=0, out=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d if out is None else out)) * 0.5
    return DataSet(jnp.asarray(x), jnp.asarray(y[:, 0] if out == 1 else y))


def _function_change(model, theta, data, t_end=1.0, steps=25, factor=1.0):
    """RMS_x |f_T(x) - f_0(x)| after Euler steps of v = factor * (the objective's velocity)."""
    obj = EmpiricalRisk(data)
    dt = t_end / steps

    @jax.jit
    def run(theta):
        def step(th, _):
            v, _ = obj.velocity_blocks(model, model.to_blocks(th), data.x, data.y)
            return th + dt * factor * model.from_blocks(v), None

        return jax.lax.scan(step, theta, None, steps)[0]

    f0 = model.predict(theta, data.x)
    f1 = model.predict(run(theta), data.x)
    return float(jnp.sqrt(jnp.mean(jnp.sum((f1 - f0).reshape(data.n, -1) ** 2, axis=1))))


@pytest.mark.slow  # ~8-14 s: runs at several widths
def test_ensemble_moves_order_one_at_every_width():
    """v = -N dE/dtheta_j: ||f(1) - f(0)|| is the same O(1) number at N = 8..512 (max / min
    <= 1.5, at L = 2 and L = 6); without the factor N (plain gradient descent on E) it
    shrinks like 1/N: the negative control."""
    data = _data(2)
    for depth in (2, 6):
        model = EnsembleResNet(d=2, depth=depth, activation="tanh")
        changes, plain = [], []
        for n in (8, 64, 512):
            theta = 0.8 * jax.random.normal(jax.random.key(n), (n, model.dim))
            changes.append(_function_change(model, theta, data))
            plain.append(_function_change(model, theta, data, factor=1.0 / n))
        changes = np.array(changes)
        assert changes.min() > 0.05, changes
        assert changes.max() / changes.min() < 1.5, (depth, changes)
        slope = loglog_fit([8, 64, 512], plain).slope
        assert abs(slope + 1.0) < 0.1, (depth, plain, slope)


@pytest.mark.slow  # the ensemble's O(1) movement (above) stays in the default tier
def test_wide_resnet_moves_order_one_at_every_width_and_depth():
    """v = -L N dE/dtheta_j^l: ||f(1) - f(0)|| is O(1) over N in {8, 64, 256} and L in {2, 4,
    16} (max / min <= 1.5); with the factor N alone (no L) the change shrinks like 1/L."""
    data = _data(2)
    changes, no_l = {}, {}
    for depth in (2, 4, 16):
        model = WideResNet(d=2, depth=depth, activation="tanh")
        for n in (8, 64, 256):
            theta = 0.8 * jax.random.normal(jax.random.key(7 * n + depth), (depth * n, 4))
            changes[depth, n] = _function_change(model, theta, data)
            if n == 64:
                no_l[depth] = _function_change(model, theta, data, factor=1.0 / depth)
    values = np.array(list(changes.values()))
    assert values.min() > 0.05 and values.max() / values.min() < 1.5, changes
    slope = loglog_fit([2, 4, 16], [no_l[k] for k in (2, 4, 16)]).slope
    assert abs(slope + 1.0) < 0.1, (no_l, slope)


def test_multilayer_mean_field_moves_order_one_and_ntk_is_lazy():
    """Mean field (flow -N dE/dW_1, -N^2 dE/dW_2, -N dE/da; weights with non-zero mean so
    that the limit is not degenerate): from N = 16 to 256 the first and middle layers'
    relative movements at t = 1 stay O(1) (ratio in [1/2, 2], 3 seeds) and f moves O(1).
    ntk, the lazy negative control: the movements shrink, the first and output layers' like
    N^-1/2 (ratio >= 2.5 for a factor 16 in N) and the middle layer's like N^-1 (>= 6)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    data = DataSet(jnp.asarray(x), jnp.asarray(np.tanh(x @ np.array([1.0, -0.5, 0.3]))))
    obj = EmpiricalRisk(data)
    moves, changes = {}, {}
    for scaling in ("mean_field", "ntk"):
        mean = 1.0 if scaling == "mean_field" else 0.0
        for n in (16, 256):
            model = Multilayer(d=3, width=n, hidden=2, activation="tanh", scaling=scaling)
            laws = {
                "w": Gaussian(mean, 1.0),
                "a": Gaussian(mean, 1.0),
                "hidden": Gaussian(mean, 1.0),
            }

            def step(th, _, model=model):
                return th + 0.025 * obj.velocity(model, th)[0], None

            run = jax.jit(lambda theta, step=step: jax.lax.scan(step, theta, None, 40)[0])

            per_seed = []
            for seed in range(3):
                theta = model.sample(jax.random.key(100 * n + seed), n, laws, jnp.float64)
                th = run(theta)
                per_seed.append({k: float(v) for k, v in model.layer_movement(th, theta).items()})
                df = model.predict(th, data.x) - model.predict(theta, data.x)
                changes[scaling, n, seed] = float(jnp.sqrt(jnp.mean(df**2)))
            moves[scaling, n] = {k: np.mean([p[k] for p in per_seed]) for k in per_seed[0]}
    for layer in ("w1", "w2"):
        ratio = moves["mean_field", 16][layer] / moves["mean_field", 256][layer]
        assert 0.5 <= ratio <= 2.0, (layer, moves)
    for layer in ("w1", "a"):
        assert moves["ntk", 16][layer] / moves["ntk", 256][layer] >= 2.5, (layer, moves)
    assert moves["ntk", 16]["w2"] / moves["ntk", 256]["w2"] >= 6.0, moves
    mf = {n: np.mean([changes["mean_field", n, s] for s in range(3)]) for n in (16, 256)}
    assert mf[256] > 0.05 and mf[16] / mf[256] < 2.5, changes


def _paths(n, d, depth, seed=0):
    """Rows of a wide-ResNet whose layer-l units are theta_j(l / L) on smooth paths
    theta_j(eps) = A_j cos(pi eps) + B_j sin(pi eps)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, n, d * d))
    eps = np.arange(depth) / depth
    rows = np.cos(np.pi * eps)[:, None, None] * a + np.sin(np.pi * eps)[:, None, None] * b
    return jnp.asarray(rows.reshape(depth * n, d * d))


def test_wide_resnet_is_the_euler_scheme_of_its_continuous_depth_ode():
    """Same particles, same measure rho_s (piecewise constant in depth): the network
    (`solver: euler`) and the ODE dz/ds = int sigma(theta z) rho_s (tsit5, adaptive) differ by
    O(1/L): fitted slope within 0.1 of -1 over L = 4..32."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(16, 2)))
    depths = (4, 8, 16, 32)
    gaps = []
    for depth in depths:
        theta = _paths(6, 2, depth)
        euler = WideResNet(d=2, depth=depth, activation="tanh").predict(theta, x)
        ode = WideResNet(d=2, depth=depth, activation="tanh", solver="tsit5").predict(theta, x)
        gaps.append(float(jnp.sqrt(jnp.mean(jnp.sum((euler - ode) ** 2, axis=1)))))
    fit = loglog_fit(depths, gaps)
    assert abs(fit.slope + 1.0) < 0.1, (gaps, fit)


@pytest.mark.slow
def test_continuous_depth_ode_is_solved_to_its_tolerance():
    """Two adaptive solvers of different orders (tsit5, dopri5) agree to 1e-8, and the
    gradient through the solver matches a central finite difference."""
    theta = _paths(4, 2, 3)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 2)))
    a = WideResNet(d=2, depth=3, activation="tanh", solver="tsit5", rtol=1e-10, atol=1e-12)
    b = WideResNet(d=2, depth=3, activation="tanh", solver="dopri5", rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(a.predict(theta, x) - b.predict(theta, x)))) < 1e-8
    data = DataSet(x, jnp.zeros((5, 2)))
    v, _ = EmpiricalRisk(data).velocity(a, theta)
    direction = jnp.asarray(np.random.default_rng(3).normal(size=theta.shape))
    h = 1e-5
    r = EmpiricalRisk(data)
    fd = (r.risk(a, theta + h * direction) - r.risk(a, theta - h * direction)) / (2 * h)
    # v = -L N grad R, so grad R . direction = -(v . direction) / (L N)
    assert math.isclose(float(-(v * direction).sum() / theta.shape[0]), float(fd), rel_tol=1e-6)


def test_vanilla_resnet_teacher_is_an_ensemble_of_one_and_a_wide_resnet_of_width_one():
    """X^{l+1} = X^l + (1/L) sigma(theta^l X^l) three ways: an `EnsembleResNet` with one
    particle, a `WideResNet` with one unit per block, and a `ModelTeacher` of either."""
    d, depth = 3, 4
    theta = jax.random.normal(jax.random.key(0), (1, depth * d * d))
    x = jax.random.normal(jax.random.key(1), (7, d))
    ens = EnsembleResNet(d=d, depth=depth, activation="tanh")
    wide = WideResNet(d=d, depth=depth, activation="tanh")
    want = np.asarray(x)
    for layer in np.asarray(theta).reshape(depth, d, d):
        want = want + np.tanh(want @ layer.T) / depth
    np.testing.assert_allclose(ens.predict(theta, x), want, rtol=1e-12)
    np.testing.assert_allclose(wide.predict(theta.reshape(depth, d * d), x), want, rtol=1e-12)
    np.testing.assert_allclose(ModelTeacher(ens, theta)(x), want, rtol=1e-12)


def test_measure_teacher_weighs_its_resnets():
    """rho* = sum_i alpha_i delta_{theta_i}: y = sum_i alpha_i X^L_{theta_i}; weights must be
    >= 0, sum to 1, one per ResNet, and only an ensemble takes them."""
    ens = EnsembleResNet(d=2, depth=2, activation="tanh")
    theta = jax.random.normal(jax.random.key(0), (3, ens.dim))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    alpha = jnp.array([0.5, 0.25, 0.25])
    units = ens.units(theta, x)
    want = 0.5 * units[:, 0] + 0.25 * units[:, 1] + 0.25 * units[:, 2]
    np.testing.assert_allclose(ModelTeacher(ens, theta, alpha)(x), want, rtol=1e-12)
    with pytest.raises(ConfigError, match="sum to 1"):
        ModelTeacher(ens, theta, jnp.array([0.5, 0.5, 0.5]))
    with pytest.raises(ConfigError, match="one per"):
        ModelTeacher(ens, theta, jnp.array([0.5, 0.5]))
    wide = WideResNet(d=2, depth=2)
    with pytest.raises(ConfigError, match="ensemble_resnet"):
        ModelTeacher(wide, jnp.zeros((2, 4)), jnp.array([1.0]))


def test_flow_norm_formula():
    """exp((1/L) sum_l (mean_j |theta_j^l|_F^p)^(1/p)) against NumPy, p = 1, 2, 3."""
    depth, n, d = 3, 5, 2
    theta = jax.random.normal(jax.random.key(0), (depth * n, d * d))
    norms = np.linalg.norm(np.asarray(theta).reshape(depth, n, d * d), axis=-1)
    model = WideResNet(d=d, depth=depth)
    for p in (1.0, 2.0, 3.0):
        want = np.exp(np.mean(np.mean(norms**p, axis=1) ** (1 / p)))
        assert math.isclose(float(model.flow_norm(theta, p)), want, rel_tol=1e-12)


def test_expanded_risk_is_the_energy_of_the_expansion():
    """E_(k) = (1/(2n)) sum |X_(k) - y|^2 and its velocity -L N dE_(k)/dtheta (autodiff);
    it refuses another model and sigma(0) != 0."""
    depth, n, d = 3, 4, 2
    model = WideResNet(d=d, depth=depth, activation="tanh")
    theta = 0.3 * jax.random.normal(jax.random.key(0), (depth * n, d * d))
    data = _data(d, n=9)
    for order in (1, 2):
        e = ExpandedRisk(EmpiricalRisk(data), order)
        x2 = model.expansion(theta, data.x, order)
        want = 0.5 * np.mean(np.sum((np.asarray(x2) - np.asarray(data.y)) ** 2, axis=1))
        assert math.isclose(float(e.risk(model, theta)), want, rel_tol=1e-12)
        grad = jax.grad(
            lambda t, o=order: (
                0.5 * jnp.mean(jnp.sum((model.expansion(t, data.x, o) - data.y) ** 2, 1))
            )
        )(theta)
        v, _ = e.velocity(model, theta)
        np.testing.assert_allclose(v, -depth * n * grad, rtol=1e-10, atol=1e-14)
    with pytest.raises(ConfigError, match="wide_resnet"):
        ExpandedRisk(EmpiricalRisk(data), 1).risk(EnsembleResNet(d=d, depth=2), jnp.zeros((2, 8)))
    with pytest.raises(ConfigError, match=r"sigma\(0\) = 0"):
        ExpandedRisk(EmpiricalRisk(data), 1).risk(
            WideResNet(d=d, depth=2, activation="softplus"), jnp.zeros((2, 4))
        )
    with pytest.raises(ConfigError, match="1 or 2"):
        ExpandedRisk(EmpiricalRisk(data), 3)


def test_particle_files_round_trip_and_name_the_kind():
    """Each deep model writes its own named arrays and reads them back; a file of another
    kind is refused with the kind named."""
    ens = EnsembleResNet(d=2, depth=3)
    wide = WideResNet(d=2, depth=3)
    ml = Multilayer(d=2, width=5, hidden=3, scaling="mean_field")
    key = jax.random.key(0)
    cases = [
        (ens, jax.random.normal(key, (4, ens.dim))),
        (wide, jax.random.normal(key, (3 * 4, wide.dim))),
        (ml, jax.random.normal(key, (5, ml.dim))),
    ]
    for model, theta in cases:
        arrays = model.particle_arrays(theta)
        np.testing.assert_allclose(model.from_arrays(arrays, "f", jnp.float64), theta, rtol=1e-15)
    np.testing.assert_allclose(wide.particle_arrays(cases[1][1])["depth"], [0, 1 / 3, 2 / 3])
    two = TwoLayer(d=2).particle_arrays(jnp.ones((3, 4)))
    with pytest.raises(ConfigError, match="two-layer network"):
        ens.from_arrays(two, "the teacher file", jnp.float64)
    with pytest.raises(ConfigError, match="ensemble-ResNet"):
        wide.from_arrays(ens.particle_arrays(cases[0][1]), "f", jnp.float64)
    with pytest.raises(ConfigError, match=r"\(N, 3, 2, 2\)"):
        EnsembleResNet(d=2, depth=3).from_arrays(
            EnsembleResNet(d=2, depth=2).particle_arrays(jnp.ones((1, 8))), "f", jnp.float64
        )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: EnsembleResNet(d=0, depth=2), "model.d"),
        (lambda: WideResNet(d=2, depth=0), "model.depth"),
        (lambda: WideResNet(d=2, depth=2, scaling="ntk"), "mean_field"),
        (lambda: WideResNet(d=2, depth=2, solver="rk9"), "model.solver"),
        (lambda: Multilayer(d=2, width=4, hidden=1), "model.hidden"),
        (lambda: Multilayer(d=2, width=4, scaling=0.75), "mean_field' or 'ntk"),
    ],
)
def test_bad_model_arguments_are_named(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
