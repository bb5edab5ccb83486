"""`multilayer_chaos`: the sub-network blocks and the per-layer coupling (a wrong coupling
gives the wrong slope), the true weights of stacked students, checks that fail on doctored
statistics, bad params refused with the field named (default tier); the quick run, a student
of the reference's own width reproducing it, resume, a reference too small and a run too
short (slow)."""

import json
import math

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.config import LawSpec
from mfnn.experiments.multilayer_chaos import (
    LAYERS,
    MOVES,
    MULTILAYER_CHAOS,
    PREDICTED,
    SCALINGS,
    blocks_of,
    law_mean,
    layer_coupling,
    model_arrays,
    students,
    unit_subsets,
)
from mfnn.models import Multilayer
from mfnn.stats import loglog_fit
from mfnn.study import Study

E = MULTILAYER_CHAOS


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return E.run(cfg, tmp_path, resume=resume, progress=False)


def _study(tmp_path):
    cfg = config.load(E.default_config())
    return Study(E, cfg, E.validate_params(cfg), tmp_path, progress=False)


def _synthetic(M=1024, d=2, seed=0):
    """True weights of a reference (M units) and, for each width N, 64 students on random
    subsets of its units moved by independent N^-1/2 perturbations: what the trained
    students look like against their twins."""
    rng = np.random.default_rng(seed)
    z = {"w1": rng.normal(size=(M, d)), "w2": 1 + rng.normal(size=(M, M)), "a": rng.normal(size=M)}
    moved = {}
    for n in (8, 16, 32, 64):
        units = unit_subsets(seed, M, n, 64)
        b = blocks_of(z, units)
        moved[n] = (units, {k: v + rng.normal(size=v.shape) / math.sqrt(n) for k, v in b.items()})
    return z, moved


def test_unit_subsets_are_random_subsets_without_repeats():
    u = unit_subsets(3, 100, 10, 50)
    assert u.shape == (50, 10) and u.min() >= 0 and u.max() < 100
    assert all(len(set(row)) == 10 and list(row) == sorted(row) for row in u.tolist())
    np.testing.assert_array_equal(u, unit_subsets(3, 100, 10, 50))  # deterministic
    assert not np.array_equal(u, unit_subsets(4, 100, 10, 50))  # another seed, other units
    counts = np.bincount(unit_subsets(3, 100, 10, 1000).ravel(), minlength=100)
    assert 60 <= counts.min() and counts.max() <= 140  # every unit about as often (100 +- 9.5)
    np.testing.assert_array_equal(unit_subsets(0, 8, 8, 1), [np.arange(8)])  # N = M: all


def test_blocks_are_the_sub_networks_on_the_units():
    M = 12
    z = {"w1": np.arange(2.0 * M).reshape(M, 2), "w2": np.arange(M * M).reshape(M, M) * 1.0}
    z["a"] = -np.arange(1.0 * M)
    units = np.array([[0, 3, 7, 11], [1, 2, 3, 4]])
    b = blocks_of(z, units, centre=0.5)
    assert b["w1"].shape == (2, 4, 2) and b["w2"].shape == (2, 4, 4) and b["a"].shape == (2, 4)
    for r, s in enumerate(units):
        np.testing.assert_array_equal(b["w1"][r], z["w1"][s])
        np.testing.assert_array_equal(b["a"][r], z["a"][s])
        for i, j in np.ndindex(4, 4):  # W_2[S, S]: the weights between the student's units
            assert b["w2"][r, i, j] == z["w2"][s[i], s[j]] - 0.5


def test_the_coupling_of_the_right_twins_decays_like_one_over_n_and_wrong_twins_do_not(
    tmp_path,
):
    z, moved = _synthetic()
    widths = sorted(moved)
    right = {k: [] for k in LAYERS}
    wrong = {k: [] for k in LAYERS}
    for n in widths:
        units, students_ = moved[n]
        c = layer_coupling(students_, blocks_of(z, units))
        # a wrong coupling: each student against the units of the next student
        cw = layer_coupling(students_, blocks_of(z, np.roll(units, 1, axis=0)))
        for k in LAYERS:
            right[k].append(float(np.mean(c[k])))
            wrong[k].append(float(np.mean(cw[k])))
    for k in LAYERS:
        assert loglog_fit(widths, right[k]).slope == pytest.approx(-1.0, abs=0.05)
        assert abs(loglog_fit(widths, wrong[k]).slope) < 0.1  # O(1): twins of other units
    # the checks on these statistics: the right coupling passes, the wrong one fails
    for coupled, ok in ((right, True), (wrong, False)):
        stats = _stats()
        stats["coupling_slopes"] = {
            t: {k: loglog_fit(widths, coupled[k]).slope for k in LAYERS} for t in ("5", "10")
        }
        checks = E.evaluate(_study(tmp_path), stats)
        assert all(checks[f"coupling_slope_{k}_t10"]["passed"] is ok for k in LAYERS)


def test_model_arrays_are_the_true_weights_of_each_student():
    for scaling in ("mean_field", "ntk"):
        net = Multilayer(d=3, width=5, hidden=2, activation="tanh", scaling=scaling)
        rng = np.random.default_rng(1)
        theta = rng.normal(size=(4, 5, net.dim))
        got = model_arrays(net, theta)
        for r in range(4):
            want = net.particle_arrays(theta[r])
            for k in LAYERS:
                np.testing.assert_allclose(got[k][r], want[k], rtol=1e-15)
        assert np.allclose(
            got["w2"], theta[..., 3:8] * (np.sqrt(5) if scaling == "mean_field" else 1)
        )


def test_law_mean():
    assert law_mean(LawSpec(law="gaussian", mean=1.0, std=2.0)) == 1.0
    assert law_mean(LawSpec(law="uniform", low=0.0, high=3.0)) == 1.5
    assert law_mean(LawSpec(law="constant", value=-2.0)) == -2.0
    assert law_mean(None) == 0.0


def _stats(coupling=-1.0, function=-0.5, share=0.05, ref_ratio=0.2, **doctored):
    """Statistics as `analyze` returns them (time keys as in the summary), at the claimed
    slopes unless doctored (``<scaling>_<layer>=slope``, ``loss_<scaling>=ratio``,
    ``largest_<scaling>_<layer>=movement``)."""
    ts = ["5", "10"]
    movement = {}
    for sc in SCALINGS:
        movement[sc] = {}
        for layer in MOVES:
            big = doctored.get(f"largest_{sc}_{layer}", 0.5 if sc == "mean_field" else 0.05)
            movement[sc][layer] = {
                "mean": [0.6, big],
                "predicted": PREDICTED[sc][layer],
                "slope": doctored.get(f"{sc}_{layer}", PREDICTED[sc][layer]),
            }
    return {
        "widths": [16, 128],
        "coupling_slopes": {t: dict.fromkeys(LAYERS, coupling) for t in ts},
        "reference_share": dict.fromkeys(ts, share),
        "function_slopes": dict.fromkeys(["0", *ts], function),
        "reference_loss_ratio": ref_ratio,
        "movement": movement,
        "loss_ratio": {sc: [0.2, doctored.get(f"loss_{sc}", 0.3)] for sc in SCALINGS},
    }


@pytest.mark.parametrize(
    ("doctored", "failing"),
    [
        ({}, None),
        ({"coupling": -0.8}, "coupling_slope_"),
        ({"coupling": -1.2}, "coupling_slope_"),
        ({"coupling": -0.5}, "coupling_slope_"),  # the rate of the function distance
        ({"coupling": 0.0}, "coupling_slope_"),  # twins of other units (a wrong coupling)
        ({"coupling": math.nan}, "coupling_slope_"),
        ({"function": -0.3}, "function_slope_t"),
        ({"function": -1.0}, "function_slope_t"),
        ({"share": 0.5}, "reference_error_t"),  # a reference too small
        ({"ref_ratio": 0.8}, "nonlinear_regime"),  # the linear phase only
        ({"ntk_w1": 0.0}, "movement_slope_ntk_w1"),  # ntk as rich as mean field
        ({"ntk_w2": -0.5}, "movement_slope_ntk_w2"),  # Frobenius of W_2: -1, not -1/2
        ({"ntk_w2_op": -1.0}, "movement_slope_ntk_w2_op"),
        ({"mean_field_a": -0.5}, "movement_slope_mean_field_a"),  # a lazy mean field
        ({"mean_field_w2": -1.0}, "movement_slope_mean_field_w2"),
        ({"loss_ntk": 0.9}, "function_moves_ntk"),  # a run too short
        ({"largest_ntk_w1": 0.9}, "ordering_at_largest_width"),
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, doctored, failing):
    checks = E.evaluate(_study(tmp_path), _stats(**doctored))
    assert len(checks) == 2 * (3 + 1) + 3 + 1 + 2 * (4 + 1) + 1
    failed = {k for k, v in checks.items() if not v["passed"]}
    if failing is None:
        assert not failed
    else:
        assert failed and all(k.startswith(failing) for k in failed), failed
    for c in checks.values():
        assert "<=" in c["expected"] or "<" in c["expected"]  # each states its threshold


def test_a_reference_that_misses_a_statistic_time_fails(tmp_path):
    checks = E.evaluate(_study(tmp_path), {"missing_times": [10.0], "message": "NaN/inf"})
    assert list(checks) == ["run_completed"] and checks["run_completed"]["passed"] is False
    assert "NaN/inf" in checks["run_completed"]["expected"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.widths=[16, 32]", "experiment.params.widths"),
        ("experiment.params.widths=[32, 16, 64]", "experiment.params.widths"),
        ("experiment.params.widths=[1, 16, 32]", "experiment.params.widths"),
        ("experiment.params.widths=[16, 32, 512]", "model.width"),
        ("model.width=1023", "model.width"),
        ("experiment.params.times=[]", "experiment.params.times"),
        ("experiment.params.times=[5.1, 10.0]", "experiment.params.times"),
        ("experiment.params.times=[5.0]", "experiment.params.times"),  # the last must be T
        ("experiment.params.times=[10.0, 5.0]", "experiment.params.times"),
        ("experiment.params.slope_tolerance=0", "experiment.params.slope_tolerance"),
        ("experiment.params.reference_share=2", "experiment.params.reference_share"),
        ("experiment.params.loss_ratio=0", "experiment.params.loss_ratio"),
        ("experiment.params.replicas=1", "experiment.params.replicas"),
        ("experiment.params.reference_width=4096", "experiment.params"),
        ("model.depth=3", "model.depth"),
        ("model.scaling=ntk", "model.scaling"),
        ("model.init.path=x.npz", "model.init.path"),
        ("dynamics.kind=sgd", "dynamics.kind"),
        ("objective.l2=0.1", "objective.l2"),
        ("data.n_test=0", "data.n_test"),
        ("data.population={dim: 3, method: monte_carlo}", "data.population"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_default_config_is_the_documented_one():
    cfg = config.load(E.default_config())
    p = E.validate_params(cfg)
    assert p.widths == (16, 32, 64, 128) and p.slope_tolerance == 0.15
    assert cfg.model.width == 2048 and cfg.model.depth == 2 and cfg.model.kind == "multilayer"
    assert cfg.model.init.hidden.mean == 1.0  # a non-degenerate limit
    text = E.describe()
    for name in ("coupling_slope_*_t*", "movement_slope_*", "reference_error_t*"):
        assert name in text
    assert "Nguyen and Pham 2020" in E.claim


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("multilayer_chaos_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    for t in ("5", "10"):
        for layer in LAYERS:
            assert f"coupling_slope_{layer}_t{t}" in s["checks"]
        assert f"reference_error_t{t}" in s["checks"]
    assert {"function_slope_t0", "nonlinear_regime", "reference/energy_identity"} <= set(
        s["checks"]
    )
    assert s["M"] == 1024 and s["widths"] == [16, 32, 64] and s["replicas"] == [256] * 3
    c = s["coupling"]
    for layer in LAYERS:  # the coupling grows with t and falls with N
        assert all(a < b for a, b in zip(c["5"][layer], c["10"][layer], strict=True))
        assert all(a > b for a, b in zip(c["10"][layer], c["10"][layer][1:], strict=False))
    mv = s["movement"]
    assert mv["ntk"]["w2"]["mean"][-1] < mv["ntk"]["w2_op"]["mean"][-1]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_quick_students_start_from_sub_networks_of_the_reference(quick):
    out, _ = quick
    (ref,) = (out / "inputs").glob("reference-*.npz")
    z = dict(np.load(ref))
    snap = np.load(out / "runs" / "reference" / "snapshots" / "step_00000000.npz")
    for k in LAYERS:
        np.testing.assert_array_equal(snap[k], z[k])
    s = unit_subsets(0, 1024, 32, 1)[0]
    (first,) = (out / "inputs").glob("ntk_n32-*.npz")
    f = np.load(first)
    np.testing.assert_array_equal(f["w1"], z["w1"][s])
    np.testing.assert_array_equal(f["w2"], z["w2"][np.ix_(s, s)] - 1.0)  # ntk: W_2 centred
    (first,) = (out / "inputs").glob("mean_field_n32-*.npz")
    np.testing.assert_array_equal(np.load(first)["w2"], z["w2"][np.ix_(s, s)])
    value = json.loads((out / "runs" / "mean_field_n32" / "result.json").read_text())["value"]
    assert value["replicas"] == 256
    for (
        layer
    ) in LAYERS:  # the same initial weights (W_2 up to the round-off of sqrt(N) W / sqrt(N))
        assert len(value["coupling"]["0"][layer]) == 256
        assert max(value["coupling"]["0"][layer]) < 1e-28
    assert len(value["function"]["0"]) == 256 and min(value["function"]["0"]) > 0
    ntk = json.loads((out / "runs" / "ntk_n32" / "result.json").read_text())["value"]
    assert ntk["replicas"] == 256 and ntk["coupling"] == {}  # no twins: movement only


@pytest.mark.slow
def test_a_student_with_every_unit_of_the_reference_is_the_reference(quick):
    # N = M, one block: the student's averages are the reference's, so every weight and f
    # follow the reference's trajectory (up to the round-off of the vmapped loop)
    out, _ = quick
    inputs = json.loads((out / "runs" / "half_reference" / "result.json").read_text())["inputs"]
    M = 1024
    inputs["config"]["model"]["width"] = M
    (ref,) = (out / "inputs").glob("reference-*.npz")
    inputs["config"]["model"]["init"]["path"] = str(ref)
    value = students(**inputs)
    for k in ("0", "20", "40"):
        for layer in LAYERS:
            assert max(value["coupling"][k][layer]) < 1e-20
        assert max(value["function"][k]) < 1e-20
    half = json.loads((out / "runs" / "half_reference" / "result.json").read_text())["value"]
    assert min(half["coupling"]["40"]["w2"]) > 1e-6  # half the units: a real error


@pytest.mark.slow
def test_resume_reuses_every_finished_sub_run(quick):
    out, s = quick
    result = out / "runs" / "ntk_n16" / "result.json"
    metrics = out / "runs" / "reference" / "metrics.csv"
    before = (result.stat().st_mtime_ns, metrics.stat().st_mtime_ns)
    again = run(out, resume=True)
    assert (result.stat().st_mtime_ns, metrics.stat().st_mtime_ns) == before
    assert again["checks"] == s["checks"]
    assert set(again["timing"]["reused"]) == set(s["runs"])


@pytest.mark.slow
def test_checks_fail_when_the_reference_is_too_small(tmp_path):
    # M = 4 N_max: the reference's own error e_M is a third of the widest coupling
    s = run(tmp_path, "model.width=256", "experiment.params.widths=[16, 32, 64]")
    failed = {k for k, v in s["checks"].items() if not v["passed"]}
    assert {"reference_error_t5", "reference_error_t10"} <= failed
    assert min(s["reference_share"].values()) > 0.2 and s["passed"] is False


@pytest.mark.slow
def test_learning_checks_fail_in_a_run_too_short(tmp_path):
    s = run(tmp_path, "experiment.params.times=[0.5]", "dynamics.steps=2", "record.every=1",
            "dynamics.dt=0.25")  # fmt: skip
    failed = {k for k, v in s["checks"].items() if not v["passed"]}
    assert {"nonlinear_regime", "function_moves_mean_field", "function_moves_ntk"} <= failed
    assert s["reference_loss_ratio"] > 0.8
