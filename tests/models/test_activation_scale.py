"""The activation's input scale s: sigma_s(z) = sigma(s z) in the student, the teacher, the
closed-form population risk and the config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import config
from mfnn.build import build
from mfnn.errors import ConfigError
from mfnn.models import TwoLayer
from mfnn.objectives import PopulationRisk
from mfnn.targets import GaussianInputs, Teacher, teacher_measure

S = 1.0 / np.sqrt(2.0)


def test_scaled_unit_is_the_unit_with_scaled_parameters():
    """sigma(s (w . x + b)) = the s = 1 unit at (s w, s b); the pullback follows the chain rule."""
    rng = np.random.default_rng(0)
    theta = jnp.asarray(rng.normal(size=(5, 1 + 3 + 1)))
    x = jnp.asarray(rng.normal(size=(7, 3)))
    scaled = TwoLayer(d=3, activation="erf", activation_scale=S)
    plain = TwoLayer(d=3, activation="erf")
    moved = theta.at[:, 1:].multiply(S)  # (a, s w, s b)
    np.testing.assert_allclose(scaled.predict(theta, x), plain.predict(moved, x), rtol=1e-13)
    weight = jnp.asarray(rng.normal(size=7))
    _, pb_s = scaled.predict_and_pullback(theta, x)
    _, pb_p = plain.predict_and_pullback(moved, x)
    g_s, g_p = np.asarray(pb_s(weight)), np.asarray(pb_p(weight))
    np.testing.assert_allclose(g_s[:, 0], g_p[:, 0], rtol=1e-12)  # d/da unchanged
    np.testing.assert_allclose(g_s[:, 1:], S * g_p[:, 1:], rtol=1e-12)  # d/dw = s x d/d(sw)
    # the hand-fused pullback equals autodiff of the scaled features
    auto = jax.grad(lambda t: weight @ scaled.predict(t, x) * t.shape[0])(theta)
    np.testing.assert_allclose(g_s, np.asarray(auto), rtol=1e-11, atol=1e-13)


def test_committee_convention_erf_over_sqrt2():
    """erf at s = 1/sqrt 2: g(0) = 0, g'(0) = sqrt(2/pi), E[g(z)^2] = (2/pi) arcsin(1/2) = 1/3."""
    net = TwoLayer(d=1, activation="erf", activation_scale=S, bias=False)
    g = net.sigma
    assert float(g(jnp.float64(0.0))) == 0.0
    np.testing.assert_allclose(float(jax.grad(g)(0.0)), np.sqrt(2 / np.pi), rtol=1e-14)
    z, w = np.polynomial.hermite_e.hermegauss(80)
    np.testing.assert_allclose(w @ np.asarray(g(jnp.asarray(z))) ** 2 / w.sum(), 1 / 3, rtol=1e-10)


@pytest.mark.parametrize("scale", [S, 0.5])
def test_closed_form_population_risk_with_scale_matches_quadrature(scale):
    """The arcsine kernel at (s u, s v) against a tensor Gauss-Hermite rule in d = 2."""
    rng = np.random.default_rng(1)
    teacher = Teacher(rng.normal(size=(2, 2)), activation="erf", activation_scale=scale)
    model = TwoLayer(d=2, activation="erf", bias=False, activation_scale=scale)
    theta = jnp.asarray(rng.normal(size=(4, 3)))
    closed = PopulationRisk.make(teacher, GaussianInputs(dim=2), "closed_form", model=model)
    quad = PopulationRisk.make(teacher, GaussianInputs(dim=2), "quadrature", nodes=80)
    np.testing.assert_allclose(closed.risk(model, theta), quad.risk(model, theta), rtol=1e-8)
    # a teacher at another scale is another function: the risks differ (negative control)
    other = Teacher(np.asarray(teacher.w), activation="erf", activation_scale=1.0)
    quad1 = PopulationRisk.make(other, GaussianInputs(dim=2), "quadrature", nodes=80)
    assert abs(float(quad1.risk(model, theta)) - float(quad.risk(model, theta))) > 1e-3


def test_mismatched_scales_are_refused():
    teacher = Teacher([[1.0, 0.0]], activation="erf", activation_scale=S)
    model = TwoLayer(d=2, activation="erf", bias=False)
    with pytest.raises(ConfigError, match="activation_scale"):
        PopulationRisk.make(teacher, GaussianInputs(dim=2), "closed_form", model=model)
    with pytest.raises(ConfigError, match="activation_scale"):
        teacher_measure(teacher, model)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="model.activation_scale"):
            TwoLayer(d=1, activation="erf", activation_scale=bad)


def _cfg(*overrides):
    raw = {
        "model": {"width": 4, "activation": "erf", "bias": False},
        "data": {
            "target": "teacher",
            "teacher": {"w": [[1.0, 0.5]]},
            "inputs": {"law": "gaussian", "dim": 2},
            "n_train": 16,
            "n_test": 4,
        },
        "dynamics": {"steps": 2},
    }
    return config.load(raw, list(overrides))


def test_config_builds_student_and_teacher_at_the_scale():
    built = build(_cfg(f"model.activation_scale={S}"))
    assert built.model.activation_scale == pytest.approx(S)
    x = built.train.x
    want = jax.scipy.special.erf(S * (x @ jnp.asarray([1.0, 0.5])))
    np.testing.assert_allclose(built.train.y, want, rtol=1e-12)
    # the teacher's own scale overrides the student's default
    built2 = build(_cfg(f"model.activation_scale={S}", "data.teacher.activation_scale=1.0"))
    want2 = jax.scipy.special.erf(x @ jnp.asarray([1.0, 0.5]))
    np.testing.assert_allclose(built2.train.y, want2, rtol=1e-12)


def test_config_refuses_scale_on_deep_models_and_bad_values():
    with pytest.raises(ConfigError, match="model.activation_scale"):
        _cfg("model.activation_scale=0")
    with pytest.raises(ConfigError, match="model.activation_scale"):
        config.load(
            {"model": {"kind": "wide_resnet", "depth": 2, "width": 4, "activation": "tanh"}},
            ["model.activation_scale=0.5"],
        )
