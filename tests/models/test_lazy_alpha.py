"""The lazy-training output scale alpha (Chizat, Oyallon and Bach 2019): the model alpha f_m
with time scaled by 1/alpha^2 moves f at the same rate while each particle moves 1/alpha."""

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import config
from mfnn.diagnostics.kernel import tangent_kernel
from mfnn.errors import ConfigError
from mfnn.models import TwoLayer
from mfnn.models.scaling import Scaling
from mfnn.objectives import EmpiricalRisk
from mfnn.targets import DataSet


def test_factors():
    s = Scaling.of("ntk", alpha=4.0)
    m = 16
    assert s.output(m) == pytest.approx(4.0 / 4.0)
    assert s.velocity(m) == pytest.approx(1.0 / 16.0)
    assert s.field(m) == pytest.approx(s.output(m) * s.velocity(m))
    assert s.dissipation(m) == pytest.approx(1.0 / s.velocity(m))
    assert s.confinement(m) == pytest.approx(s.velocity(m) / m)
    assert (
        Scaling.of("mean_field").mean_field and not Scaling.of("mean_field", alpha=2.0).mean_field
    )


def _setup(alpha, m=64):
    rng = np.random.default_rng(0)
    half = rng.normal(size=(m // 2, 4))
    theta = np.concatenate([half, half * np.array([-1.0, 1, 1, 1])])  # paired: f_0 = 0
    x, y = rng.normal(size=(10, 2)), rng.normal(size=10)
    model = TwoLayer(d=2, activation="erf", alpha=alpha)
    return model, jnp.asarray(theta), DataSet(jnp.asarray(x), jnp.asarray(y))


@pytest.mark.parametrize("alpha", [1.0, 10.0, 1000.0])
def test_function_space_rate_does_not_depend_on_alpha(alpha):
    """s K (the kernel of df/dt) and df/dt itself are alpha-free; the velocity is 1/alpha."""
    ref_model, theta, data = _setup(1.0)
    model, _, _ = _setup(alpha)
    sk = model.velocity_scale(64) * tangent_kernel(model, theta, data.x)
    sk1 = ref_model.velocity_scale(64) * tangent_kernel(ref_model, theta, data.x)
    np.testing.assert_allclose(sk, sk1, rtol=1e-12)
    v, _ = EmpiricalRisk(data).velocity(model, theta)
    v1, _ = EmpiricalRisk(data).velocity(ref_model, theta)
    np.testing.assert_allclose(v * alpha, v1, rtol=1e-10, atol=1e-14)  # particles: 1/alpha
    h = 1e-6  # df/dt = (d/dh) f(theta + h v) at h = 0, by a central difference
    df = (model.predict(theta + h * v, data.x) - model.predict(theta - h * v, data.x)) / (2 * h)
    df1 = ref_model.predict(theta + h * v1, data.x) - ref_model.predict(theta - h * v1, data.x)
    np.testing.assert_allclose(df, df1 / (2 * h), rtol=1e-6)
    # the same rate is -s K (f - y) / n
    np.testing.assert_allclose(df, -sk @ (0.0 - data.y) / 10, rtol=1e-6)


def test_alpha_is_refused_where_f_must_be_an_integral():
    with pytest.raises(ConfigError, match="model.alpha"):
        config.load({}, ["model.alpha=0"])
    with pytest.raises(ConfigError, match="alpha"):
        Scaling.of("mean_field", alpha=float("inf"))
    raw = {"dynamics": {"integrator": "euler_maruyama", "langevin": {"beta": 100.0}}}
    from mfnn.build import build

    with pytest.raises(ConfigError, match="alpha"):
        build(config.load(raw, ["model.alpha=2"]))
    with pytest.raises(ConfigError, match="model.alpha"):
        config.load({"model": {"kind": "wide_resnet", "depth": 2, "width": 2,
                               "activation": "tanh", "alpha": 2.0}}, [])  # fmt: skip
