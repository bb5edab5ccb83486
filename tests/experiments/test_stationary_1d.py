"""`stationary_1d`: Example 2's symmetry statements against the exact risk of constructed
measures, the moment statistics, the quick checks, checks that fail when they should,
resume, and bad parameters refused with the field named."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.build import build
from mfnn.experiments import EXPERIMENTS
from mfnn.experiments.stationary_1d import moment_stats, vanishing_orders

S1 = EXPERIMENTS["stationary_1d"]
ODD = ("tanh", "arctan", "sigmoid")
EVEN = ("gaussian", "quadratic")


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(S1.default_config(), list(S1.quick) + list(overrides))
    return S1.run(cfg, tmp_path, resume=resume, progress=False)


def risk_and_scale(activation, student, c, alpha):
    """The quadrature population risk of the uniform measure on ``student`` against
    rho* = sum alpha_i delta_{c_i}, and R0 = (1/2) E f*^2 for scale."""
    cfg = config.load(
        {
            "model": {
                "width": len(student),
                "activation": activation,
                "bias": False,
                "train_output": False,
            },
            "data": {
                "population": {
                    "inputs": "gaussian",
                    "dim": 1,
                    "method": "quadrature",
                    "nodes": 150,
                },
                "teacher": {"w": [[v] for v in c], "alpha": list(alpha)},
            },
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


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("activation", EVEN + ODD + ("softplus",))
def test_example_2_parity_decides_zero_loss(case, activation):
    student, c, alpha = CASES[case]
    r, r0 = risk_and_scale(activation, student, c, alpha)
    if activation in ZERO[case]:
        assert r <= 1e-13 * r0, (r, r0)
    else:
        assert r >= 1e-5 * r0, (r, r0)


@pytest.mark.parametrize(
    ("case", "activation"), [(case, a) for case in sorted(CASES) for a in sorted(ZERO[case])]
)
def test_vanishing_orders_agree_with_the_constructed_measures(case, activation):
    # where (4) holds (zero loss), every moment `vanishing_orders` names is zero
    student, c, alpha = CASES[case]
    s = moment_stats(np.asarray(student), np.asarray(c), np.asarray(alpha), 6)
    for k in vanishing_orders(activation, 6):
        assert s["D"][k - 1] == pytest.approx(0.0, abs=1e-12), k


def test_vanishing_orders_known_answers():
    assert vanishing_orders("gaussian", 6) == [2, 4, 6]
    assert vanishing_orders("quadratic", 6) == [2]
    for a in ODD:
        assert vanishing_orders(a, 5) == [1, 3, 5]
    assert vanishing_orders("softplus", 6) == [1, 2, 4, 6]
    with pytest.raises(ConfigError, match="experiment.params.activations"):
        vanishing_orders("relu", 4)


def test_moment_stats_standard_error_and_z():
    w = np.array([0.0, 1.0, 2.0, 3.0])
    s = moment_stats(w, np.array([1.0]), np.array([1.0]), 2)
    assert s["rho"] == pytest.approx([1.5, 3.5])
    assert s["D"] == pytest.approx([0.5, 2.5])
    se1 = np.std(w, ddof=1) / 2.0
    assert s["SE"][0] == pytest.approx(se1)
    assert s["z"][0] == pytest.approx(0.5 / se1)


def test_standard_error_shrinks_like_inverse_sqrt_width(slope):
    # the tolerance z * SE_k is the sampling resolution of m particles: ~ m^(-1/2)
    rng = np.random.default_rng(0)
    ms = [256, 1024, 4096, 16384]
    se = [moment_stats(rng.standard_normal(m), np.zeros(1), np.ones(1), 4)["SE"] for m in ms]
    for k in range(4):
        assert slope(ms, [s[k] for s in se]) == pytest.approx(-0.5, abs=0.08)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("stationary_1d_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    acts = ("gaussian", "quadratic", "tanh", "arctan", "sigmoid", "softplus")
    widths = (128, 512)
    for a in acts:
        for m in widths:
            for kind in ("loss", "symmetry", "quadrature"):
                assert f"{kind}_{a}_m{m}" in s["checks"]
            sub = s["runs"][f"{a}_m{m}"]
            assert sub["width"] == m and sub["activation"] == a
            assert sub["checked_orders"] == vanishing_orders(a, 3)
            assert len(sub["moments"]["z"]) == 6
    # the tolerance is stricter at the larger width
    for a in acts:
        se = [s["runs"][f"{a}_m{m}"]["moments"]["SE"][1] for m in widths]
        assert se[1] < se[0]
    assert s["checks"]["gaussian_learns_symmetrized_teacher"]["value"] > 3
    assert s["checks"]["quadratic_m4_not_forced"]["value"] > 3
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


def test_quick_students_share_the_initial_draw(quick):
    # the same seed and width give the same full-support start for every activation
    out, _ = quick
    first = {}
    for a in ("gaussian", "tanh", "softplus"):
        snaps = sorted((out / "runs" / f"{a}_m128" / "snapshots").glob("*.npz"))
        first[a] = np.load(snaps[0])["w"]
    np.testing.assert_array_equal(first["gaussian"], first["tanh"])
    np.testing.assert_array_equal(first["gaussian"], first["softplus"])


def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, after = resume_after_interrupt(out, "softplus_m512", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


def test_checks_fail_when_the_run_is_too_short(tmp_path):
    # t = 40: the loss has not dropped by 1e-4 and the odd moments are still off
    s = run(
        tmp_path,
        "experiment.params.activations=[tanh]",
        "experiment.params.widths=[64, 2048]",
        "dynamics.steps=40",
        "record.every=10",
    )
    assert s["checks"]["loss_tanh_m64"]["passed"] is False
    assert s["checks"]["symmetry_tanh_m2048"]["passed"] is False
    assert s["passed"] is False


def test_symmetry_check_fails_on_the_free_moments(quick):
    # checking the orders (4) leaves free fails: the test can tell them apart
    _, s = quick
    z = s["runs"]["gaussian_m512"]["moments"]["z"]
    assert max(z[0], z[2]) > 3  # odd moments of the gaussian student: free


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.activations=[relu]", "experiment.params.activations"),
        ("experiment.params.activations=[]", "experiment.params.activations"),
        ("experiment.params.activations=[tanh, tanh]", "experiment.params.activations"),
        ("experiment.params.widths=[1]", "experiment.params.widths"),
        ("experiment.params.widths=[64, 64]", "experiment.params.widths"),
        ("experiment.params.dt={quadratic: -1}", "experiment.params.dt"),
        ("experiment.params.loss_ratio=2", "experiment.params.loss_ratio"),
        ("experiment.params.z=0", "experiment.params.z"),
        ("experiment.params.checked_order=7", "experiment.params.checked_order"),
        ("experiment.params.orders=[1]", "experiment.params"),
        ("data.population.dim=2", "data.population"),
        ("data.population.method=monte_carlo", "data.population"),
        ("data.population.inputs=uniform", "data.population.inputs"),
        ("model.bias=true", "model.bias"),
        ("model.init.w.law=constant", "model.init.w.law"),
        ("data.teacher.a=[1.0, 1.0, 1.0]", "data.teacher"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute
