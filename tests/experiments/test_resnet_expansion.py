"""`resnet_expansion`: checks that fail on doctored statistics, the orders in |theta| measured by
the experiment's own computation against a wrong-order negative control, the 1/k! weights,
the layer-order trap of E_(2) against E_(1) from the same start, the flat derivative of a
Dirac state, the plan's stacked layouts, bad params refused with the field named (default
tier); the quick run and a run too short to train or to settle (slow)."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.build import build, enable_dtype
from mfnn.experiments.resnet_expansion import (
    RESNET_EXPANSION,
    _flat_slopes,
    evaluate,
    expansion_orders,
    factorial_weights,
    order_statistics,
)
from mfnn.models import WideResNet
from mfnn.objectives import EmpiricalRisk, ExpandedRisk
from mfnn.study import Study
from mfnn.targets import DataSet

E = RESNET_EXPANSION
CLAIMS = {"output_1": 2.0, "output_2": 3.0, "energy_1": 3.0, "energy_2": 4.0}


def run(tmp_path, *overrides):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return E.run(cfg, tmp_path, progress=False)


def _study(tmp_path, *overrides):
    cfg = config.load(E.default_config(), list(overrides))
    return Study(E, cfg, E.validate_params(cfg), tmp_path, progress=False)


# ----------------------------------------------------------------- the checks


def _stats(
    track2=1e-5,
    gain=100.0,
    loss_ratio=0.01,
    slopes=None,
    weight_error=1e-4,
    factorial=0.99,
    trapped=3,
    converged=5,
    e1_max=1e-14,
    flat=-1e-3,
):
    """Statistics as `analyze` returns them, doctored."""
    weights = {"weight_error": weight_error, "factorial_limit": factorial}
    return {
        "tracking": {"track": {"1": 1e-3, "2": track2}, "gain": gain, "loss_ratio": loss_ratio},
        "orders": {"slopes": CLAIMS | (slopes or {}), "weights": {"2": weights, "3": weights}},
        "trap": {
            "e2": {"trapped": trapped, "converged": converged, "trap_flat_gap": {"min": [0, flat]}},
            "e1": {"max_energy_T": e1_max, "trapped": 0},
        },
    }


@pytest.mark.parametrize(
    ("doctored", "failing"),
    [
        ({}, set()),
        ({"track2": 0.2}, {"tracking_e2"}),
        ({"gain": 1.5}, {"second_order_gain"}),  # E_(2) no closer to E than E_(1)
        ({"loss_ratio": 0.9}, {"training_moves"}),
        ({"slopes": {"output_1": 3.0}}, {"output_order_1"}),  # X_(2)'s order claimed for X_(1)
        ({"slopes": {"output_2": 2.0}}, {"output_order_2"}),  # X_(1)'s error: a wrong order
        ({"slopes": {"energy_1": 2.0}}, {"energy_order_1"}),  # a teacher of fixed size: k + 1
        ({"slopes": {"energy_2": 3.0}}, {"energy_order_2"}),
        ({"slopes": {"output_2": math.nan}}, {"output_order_2"}),
        ({"weight_error": 0.05}, {"weights_k2", "weights_k3"}),
        ({"factorial": 0.9}, {"factorial_k2", "factorial_k3"}),  # L_max too small
        ({"trapped": 0}, {"e2_local_minimum"}),
        ({"converged": 0}, {"e2_global_minimum_reached"}),
        ({"e1_max": 1e-4}, {"e1_all_converge"}),  # an E_(1) flow stuck
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, doctored, failing):
    checks = evaluate(_study(tmp_path), _stats(**doctored))
    assert len(checks) == 15
    counted = {k for k, v in checks.items() if not v["passed"] and k != "trap_flat_gap"}
    assert counted == failing


def test_flat_gap_is_informational_and_the_verdict_ignores_it(tmp_path):
    checks = evaluate(_study(tmp_path), _stats())
    assert checks["trap_flat_gap"]["passed"] is False  # a saddle over all measures
    assert E.spec("trap_flat_gap").informational
    assert evaluate(_study(tmp_path), _stats(flat=0.0))["trap_flat_gap"]["passed"] is True


def test_a_run_that_misses_its_last_step_fails(tmp_path):
    stats = _stats()
    stats["tracking"] = {"missing_times": [50.0], "message": "NaN/inf at step 12"}
    stats["trap"] = {"missing_times": [24000.0], "message": "interrupted"}
    checks = evaluate(_study(tmp_path), stats)
    assert checks["run_completed_flows"]["passed"] is False
    assert "NaN/inf" in checks["run_completed_flows"]["expected"]
    assert checks["run_completed_trap"]["passed"] is False
    assert "tracking_e2" not in checks and "e2_local_minimum" not in checks
    assert checks["output_order_2"]["passed"] is True  # the computation still counts


# ----------------------------------------------------- the orders and the 1/k! weights


def test_orders_in_theta_and_a_wrong_order_fails():
    scales = [2.0**-k for k in range(5, 10)]
    value = {
        "orders": expansion_orders(2, 3, 4, scales, 16, 0),
        "weights": factorial_weights(2, 4, [2, 4], 1e-3, 16, 0),
    }
    o = order_statistics(value, scales)
    for key, claim in CLAIMS.items():
        assert abs(o["slopes"][key] - claim) < 0.1, (key, o["slopes"][key])
    # negative control: the error of the first-order expansion fitted against the claim of
    # the second order (what a wrong `order` in the expansion would give)
    wrong = dict(value, orders=dict(value["orders"], output_2=value["orders"]["output_1"]))
    o_wrong = order_statistics(wrong, scales)
    assert abs(o_wrong["slopes"]["output_2"] - 2.0) < 0.1
    stats = _stats(slopes=o_wrong["slopes"])
    assert evaluate(_study_default(), stats)["output_order_2"]["passed"] is False
    # the weights binom(L, k) / L^k: L = 2 has no third-order term, L = 4 has 4 / 64
    c2, c3 = value["weights"]["c_2"], value["weights"]["c_3"]
    np.testing.assert_allclose(c2, [1 / 4, 6 / 16], rtol=2e-3)
    assert abs(c3[0]) < 1e-4 and abs(c3[1] - 4 / 64) < 2e-4


def _study_default():
    cfg = config.load(E.default_config())
    return Study(E, cfg, E.validate_params(cfg), None, progress=False)


# ------------------------------------------------------------------- the trap (d = 1)


def _trap_objectives(n=21):
    enable_dtype("float64")
    net = WideResNet(1, 2, "tanh")
    x = jnp.linspace(-2.0, 2.0, n)[:, None]
    star = jnp.array([[-4.0], [1.5]])
    risks = {
        k: ExpandedRisk(EmpiricalRisk(DataSet(x, net.expansion(star, x, k))), k) for k in (1, 2)
    }
    return net, risks


@eqx.filter_jit
def _trap_flows(net, risks, starts2, start1, steps=3000, dt=10.0):
    """Euler flows of E_(2) from ``starts2`` (k, L, 1) and of E_(1) from ``start1`` (L, 1):
    the final states, their energies, |v|^2 and (E_(2)) the smallest Hessian eigenvalue."""

    def descend(risk, theta):
        def step(t, _):
            return t + dt * risk.velocity_blocks(net, net.to_blocks(t))[0].T.reshape(t.shape), None

        end = jax.lax.scan(step, theta, None, length=steps)[0]
        v = risk.velocity_blocks(net, net.to_blocks(end))[0]
        return end, risk.energy(net, end), jnp.sum(v**2)

    def lowest(theta):
        hess = jax.hessian(lambda q: risks[2].energy(net, q.reshape(theta.shape)))
        return jnp.linalg.eigvalsh(hess(theta.reshape(-1)))[0]

    ends2, e2, d2 = jax.vmap(lambda t: descend(risks[2], t))(starts2)
    return ends2, e2, d2, jax.vmap(lowest)(ends2), descend(risks[1], start1)


@pytest.mark.slow  # ~9-16 s: the experiment's own --quick run is in the slow tier too
def test_e2_has_a_layer_order_trap_that_e1_does_not():
    net, risks = _trap_objectives()
    start = jnp.array([[1.0], [-5.0]])  # near the teacher with its blocks swapped
    near = jnp.array([[-3.0], [1.0]])  # near the teacher
    _, e2, d2, low, (_, e1, _) = _trap_flows(net, risks, jnp.stack([start, near]), start)
    assert e2[0] > 1e-4 and e1 < 1e-10  # E_(2) stops above 0, E_(1) reaches its minimum 0
    assert d2[0] < 1e-9 * e2[0] and low[0] > 0  # stationary, a strict local minimum
    assert e2[1] < 1e-10  # from the teacher's side E_(2) reaches its minimum 0
    # E_(1) cannot tell the order of the blocks, E_(2) can
    energy = eqx.filter_jit(lambda r, t: r.energy(net, t))
    swap = start[::-1]
    assert float(energy(risks[1], start)) == pytest.approx(float(energy(risks[1], swap)), rel=1e-13)
    assert abs(float(energy(risks[2], start)) - float(energy(risks[2], swap))) > 1e-4


def test_flat_slope_of_a_dirac_state_is_the_derivative_of_the_mixture():
    net, risks = _trap_objectives()
    obj = risks[2]
    theta = jnp.array([[0.9], [-4.9]])
    probes = jnp.array([0.9, -4.9, 0.6, 3.0])
    g = np.asarray(eqx.filter_jit(_flat_slopes)(obj, net, theta, probes))  # (L, P)
    assert abs(g[0, 0]) < 1e-15 and abs(g[1, 1]) < 1e-15  # mass moved onto itself
    energy = eqx.filter_jit(lambda t: obj.energy(net, t))
    e0 = float(energy(theta))
    for layer in (0, 1):
        for j, q in enumerate(np.asarray(probes)):

            def mixture(moved, layer=layer, q=q):  # `moved` of 4 units of block l at theta'
                cols = np.repeat(np.asarray(theta), 4, axis=1)  # (L, 4)
                cols[layer, :moved] = q
                return float(energy(jnp.asarray(cols.reshape(-1, 1))))

            # E is quadratic in eps: from eps = 1/4 and 1/2, slope 8 E(1/4) - 2 E(1/2) - 6 E(0)
            slope = 8.0 * mixture(1) - 2.0 * mixture(2) - 6.0 * e0
            assert g[layer, j] == pytest.approx(slope, rel=1e-8, abs=1e-14)


# ------------------------------------------------------------------ the plan


def test_plan_writes_shared_starts_and_stacks_the_flows(tmp_path):
    s = _study(tmp_path, *E.quick, "experiment.params.trap_starts=3")
    plan = E.plan(s)
    assert list(plan) == ["flows", "orders", "trap"]
    flows = plan["flows"].customize(build(plan["flows"].config))
    m = flows.theta0.shape[0] // 3
    assert m == 4 * 16 and flows.dynamics.sizes == (m, m, m)
    np.testing.assert_array_equal(flows.theta0[:m], flows.theta0[m : 2 * m])
    np.testing.assert_array_equal(flows.theta0[:m], flows.theta0[2 * m :])
    kinds = [type(p.objective).__name__ for p in flows.dynamics.parts]
    assert kinds == ["EmpiricalRisk", "ExpandedRisk", "ExpandedRisk"]
    assert [p.objective.order for p in flows.dynamics.parts[1:]] == [1, 2]
    trap = plan["trap"].customize(build(plan["trap"].config))
    rows = trap.theta0.shape[0] // 2
    assert rows == 3 * 2 and trap.dynamics.sizes == (rows, rows)
    np.testing.assert_array_equal(trap.theta0[:rows], trap.theta0[rows:])  # the same starts
    with np.load(plan["trap"].config.model.init.path) as z:
        starts = z["layers"][..., 0, 0].T  # (R, L): start r = unit r of every block
    np.testing.assert_array_equal(np.asarray(trap.theta0[:rows]).reshape(3, 2), starts)
    e2, e1 = (p.flow.objective for p in trap.dynamics.parts)
    assert (e2.order, e1.order) == (2, 1)
    net = WideResNet(1, 2, "tanh")
    star = jnp.array([[-4.0], [1.5]])
    for obj, k in ((e2, 2), (e1, 1)):  # each teacher in its energy's class
        np.testing.assert_allclose(obj.inner.data.y, net.expansion(star, obj.inner.data.x, k))


# ------------------------------------------------------------------ bad params


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.activation=relu", "model.activation"),
        ("model.solver=tsit5", "model.solver"),
        ("objective.expansion=2", "objective.expansion"),
        ("objective.l2=0.1", "objective.l2"),
        ("dtype=float32", "dtype"),
        ("data.target=sign", "data.target"),
        ("record.every=7", "record.every"),
        ("experiment.params.trap_steps=2401", "experiment.params.trap_steps"),
        ("experiment.params.scales=[0.1, 0.1, 0.2]", "experiment.params.scales"),
        ("experiment.params.scales=[0.1, 0.05]", "experiment.params.scales"),
        ("experiment.params.weight_depths=[8, 4]", "experiment.params.weight_depths"),
        ("experiment.params.trap_teacher=[1.0]", "experiment.params.trap_teacher"),
        ("experiment.params.order_gain=1", "experiment.params.order_gain"),
        ("experiment.params.weight_scale=0.5", "experiment.params.weight_scale"),
        ("experiment.params.depth=4", "experiment.params"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_default_config_is_the_documented_one():
    p = E.validate_params(config.load(E.default_config()))
    assert p.trap_teacher == (-4.0, 1.5) and p.slope_tolerance == 0.1
    assert p.weight_depths[-1] == 256 and len(p.scales) == 8
    text = E.describe()
    for name in ("tracking_e2", "output_order_*", "e2_local_minimum", "*/energy_identity"):
        assert name in text


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet_expansion_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    failed = {
        k: v for k, v in s["checks"].items() if not v["passed"] and not v.get("informational")
    }
    assert not failed, failed
    assert {"flows/energy_identity", "trap/energy_identity"} <= set(s["checks"])
    tr, trap = s["tracking"], s["trap"]
    assert tr["gap"]["2"] < tr["gap"]["1"] and tr["track"]["2"] < tr["track"]["1"]
    assert trap["e1"]["trapped"] == 0 and trap["e2"]["trapped"] >= 1
    # the trap is the teacher with its blocks swapped (nearly), stationary, above 0
    assert trap["e2"]["trap_to_reversed_teacher"] < 1.5
    assert trap["e2"]["trap_dissipation"] < 1e-12 and trap["e2"]["trap_hessian_min"] > 0
    assert trap["e2"]["trap_energies"][0] > 1e-4
    # a saddle over all measures: a mass moved to theta' ~ 0.6 in block 1 lowers E_(2)
    assert min(trap["e2"]["trap_flat_gap"]["min"]) < 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "_figures" not in on_disk
    for fig in ("energies.png", "orders.png", "trap.png"):
        assert (out / "figures" / fig).stat().st_size > 5000


@pytest.mark.slow
def test_checks_fail_when_the_runs_are_too_short(tmp_path):
    s = run(
        tmp_path,
        "dynamics.steps=10",
        "experiment.params.trap_steps=40",
        "experiment.params.trap_records=10",
    )
    failed = {k for k, v in s["checks"].items() if not v["passed"]}
    assert {"training_moves", "e1_all_converge", "e2_global_minimum_reached"} <= failed
    assert "e2_local_minimum" in failed  # nothing has settled yet
    assert s["passed"] is False
