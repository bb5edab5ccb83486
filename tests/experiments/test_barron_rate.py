"""`barron_rate`: the sampling statistics and the checks on known and doctored statistics (a
measure that does not represent f, untrained networks, inputs outside the box), bad
parameters refused; slow: the quick run, its path norms, reuse and a changed measure. The
closed forms of the measure are tested in tests/diagnostics/test_barron.py."""

import json
import types

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.diagnostics.norms import path_norm
from mfnn.experiments.barron_rate import BARRON_RATE as BR
from mfnn.experiments.barron_rate import analyze, evaluate, sampling_study
from mfnn.models import TwoLayer
from mfnn.study import Study


def load(*overrides):
    return config.load(BR.default_config(), list(BR.quick) + list(overrides))


def run(out, *overrides, resume=False):
    return BR.run(load(*overrides), out, resume=resume, progress=False)


def sampling_stats(*overrides, **study_inputs) -> tuple[Study, dict]:
    """(study, statistics) of the sampling part alone, from a small `sampling_study`."""
    cfg = load("experiment.params.train_widths=[]", *overrides)
    study = Study(BR, cfg, BR.validate_params(cfg), None)
    p, inp = study.params, cfg.data.inputs
    inputs = {
        "measure": [c.model_dump() for c in p.measure],
        "low": inp.low,
        "high": inp.high,
        "dim": inp.dim,
        "eval_points": p.eval_points,
        "widths": list(p.widths),
        "seeds": p.seeds,
        "std_factor": p.sample_std_factor,
        "seed": cfg.seed,
    }
    value = sampling_study(**(inputs | study_inputs))
    return study, analyze(study, {"sampling": types.SimpleNamespace(value=value)})


SMALL = ("experiment.params.eval_points=512", "experiment.params.seeds=8")


def test_sampling_from_pi_passes_and_from_another_measure_fails():
    study, st = sampling_stats(*SMALL)
    checks = evaluate(study, st)
    assert set(checks) == {"bound", "slope", "expected_error", "premise"}
    assert all(c["passed"] for c in checks.values()), checks
    assert st["slack_3P2_over_V"] > 10  # the bound is loose (see the claim)
    assert st["sampled_path_norm_mean"][-1] == pytest.approx(st["path_norm_pi"], rel=0.02)
    # 4x the stds: not a representing measure of f, the error stops at a bias floor and
    # exceeds 3 P^2 / N at large N
    study, st = sampling_stats(*SMALL, "experiment.params.sample_std_factor=4")
    checks = evaluate(study, st)
    for name in ("bound", "slope", "expected_error"):
        assert checks[name]["passed"] is False, name
    assert checks["premise"]["passed"] is True


def test_checks_on_known_statistics():
    # mean err exactly V/N: slope -1, z = 0, bound ratio V / (3 P^2)
    study, st = sampling_stats(*SMALL)
    ns = np.asarray(st["widths"], float)
    st = st | {"mean_error": (2.0 / ns).tolist(), "expected_error": (2.0 / ns).tolist()}
    st |= {"slope": -1.0, "path_norm_pi": 2.0, "B2_sq_pi": 4.0}
    st["bound"] = (3 * 2.0**2 / ns).tolist()
    c = evaluate(study, st)
    assert c["bound"]["value"] == pytest.approx(2.0 / 12.0)
    assert c["expected_error"]["value"] == 0.0 and c["slope"]["passed"]
    assert c["premise"]["value"]["B2_sq_over_3P_sq"] == pytest.approx(4.0 / 12.0)
    # inputs in [-2, 2]^4: |w . x + b| <= ||w||_1 + |b| no longer holds
    assert evaluate(study, st | {"input_sup_norm": 2.0})["premise"]["passed"] is False


def test_trained_checks_fail_for_untrained_networks():
    study, st = sampling_stats(*SMALL)
    good = {
        "m16": {"err_train_initial": 0.30, "err_train": 3e-4, "err_test": 4e-4},
        "m128": {"err_train_initial": 0.30, "err_train": 4e-5, "err_test": 7e-5},
    }
    for name, n in (("m16", 16), ("m128", 128)):
        good[name] |= {"rate_train": 2.0 / n, "rate_test": 2.1 / n}
    c = evaluate(study, st | {"trained": good})
    assert c["trained_below_rate"]["value"] == pytest.approx(7e-5 / (2.1 / 128))
    assert c["trained_below_rate"]["passed"] and c["untrained_misses_rate"]["passed"]
    assert c["untrained_misses_rate"]["value"] == pytest.approx(0.30 / (2.0 / 16))
    # the negative control: networks that were not trained (T = 0) fail the trained check
    untrained = {k: v | {"err_train": 0.30, "err_test": 0.31} for k, v in good.items()}
    assert evaluate(study, st | {"trained": untrained})["trained_below_rate"]["passed"] is False
    # and one trained network that generalizes badly (test error above V_test/N) fails too
    overfit = good | {"m128": good["m128"] | {"err_test": 0.02}}
    assert evaluate(study, st | {"trained": overfit})["trained_below_rate"]["passed"] is False
    # a width so small that V/N exceeds the error at t = 0: the trained check is empty there
    tiny = good | {"m16": good["m16"] | {"rate_train": 2.0 / 4}}
    assert evaluate(study, st | {"trained": tiny})["untrained_misses_rate"]["passed"] is False


def test_trained_check_fails_when_rates_are_doctored_down():
    study, st = sampling_stats(*SMALL)
    doctored = {"m64": {"err_train_initial": 0.3, "err_train": 1e-3, "err_test": 1e-3}}
    doctored["m64"] |= {"rate_train": 1e-4, "rate_test": 1e-4}
    c = evaluate(study, st | {"trained": doctored})
    assert c["trained_below_rate"]["value"] == pytest.approx(10.0)
    assert c["trained_below_rate"]["passed"] is False


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.measure=[]", "experiment.params.measure"),
        (
            "experiment.params.measure=[{weight: 1.0, a: 1.0, mean: [0, 0], std: 1.0}]",
            "experiment.params.measure.0.mean",
        ),
        (
            "experiment.params.measure=[{weight: 0.5, a: 1.0, mean: [0, 0, 0, 0, 0], std: 1.0}]",
            "experiment.params.measure",
        ),
        (
            "experiment.params.measure=[{weight: 1.0, a: 1.0, mean: [0, 0, 0, 0, 0], std: 0}]",
            "experiment.params.measure.0.std",
        ),
        ("experiment.params.widths=[10, 20, 50]", "experiment.params.widths"),
        ("experiment.params.widths=[10, 10, 1000]", "experiment.params.widths"),
        ("experiment.params.widths=[1000, 10, 100]", "experiment.params.widths"),
        ("experiment.params.seeds=1", "experiment.params.seeds"),
        ("experiment.params.eval_points=3", "experiment.params.eval_points"),
        ("experiment.params.bound_factor=0", "experiment.params.bound_factor"),
        ("experiment.params.slope_tolerance=-1", "experiment.params.slope_tolerance"),
        ("experiment.params.train_widths=[16, 16]", "experiment.params.train_widths"),
        ("experiment.params.train_widths=[0]", "experiment.params.train_widths"),
        ("experiment.params.draws=3", "experiment.params.draws"),
        ("data.inputs.law=gaussian", "data.inputs.law"),
        ("model.activation=tanh", "model.activation"),
        ("model.scaling=ntk", "model.scaling"),
        ("data.path=data.npz", "data.path"),
        ("record.snapshot_every=null", "record.snapshot_every"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


# ------------------------------------------------------------------- slow: quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("barron_rate_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert {"bound", "slope", "expected_error", "premise"} < set(s["checks"])
    assert {"trained_below_rate", "untrained_misses_rate"} < set(s["checks"])
    assert s["informational"] == {}
    widths = np.array(s["widths"])
    assert widths.max() / widths.min() >= 100
    # the mean error sits on V/N, far below the bound (the bound is loose, see the claim)
    np.testing.assert_array_less(np.array(s["mean_error"]), np.array(s["bound"]))
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_quick_training_fits_f_and_records_the_path_norm(quick):
    out, s = quick
    for name, tr in s["trained"].items():
        n = int(name[1:])
        # training fits f: the L2 error drops by orders of magnitude, below V/N
        assert tr["err_test"] < 1e-2 * tr["err_train_initial"]
        assert tr["err_train"] < tr["rate_train"] and tr["err_train_initial"] > tr["rate_train"]
        # the path norm grows from its small start (a_0 ~ N(0, 0.1^2)), one per snapshot
        pn = np.array(tr["path_norm"])
        assert len(pn) == 2000 // 20 + 1 and pn[-1] > 5 * pn[0]
        # the recorded numbers are `path_norm` of the snapshots
        last = sorted((out / "runs" / f"train_m{n}" / "snapshots").glob("*.npz"))[-1]
        arr = np.load(last)
        net = TwoLayer(d=4, activation="relu", scaling="mean_field", bias=True)
        theta = net.join(*(jnp.asarray(arr[k]) for k in "awb"))
        assert pn[-1] == pytest.approx(float(path_norm(net, theta)), rel=1e-12)


@pytest.mark.slow
def test_rerun_reuses_every_sub_run(quick):
    out, s = quick
    files = [out / "runs" / f"train_{name}" / "metrics.csv" for name in s["trained"]]
    before = [f.stat().st_mtime_ns for f in files]
    again = run(out, resume=True)
    assert [f.stat().st_mtime_ns for f in files] == before
    assert again["checks"] == s["checks"]
    assert again["timing"]["reused"] == sorted(["sampling", *(f"train_{k}" for k in s["trained"])])


@pytest.mark.slow
def test_a_changed_measure_is_not_reused(tmp_path):
    # another measure is another target with the same sub-run settings: its data file has
    # another name (named by content), so the training run's config changes and it reruns
    small = (*SMALL, "experiment.params.train_widths=[16]", "dynamics.steps=200")
    first = run(tmp_path, *small)
    other = run(
        tmp_path,
        *small,
        "experiment.params.measure=[{weight: 1.0, a: 1.0, mean: [0, 1, 0, 0, 0], std: 0.5}]",
    )
    assert other["timing"]["reused"] == []
    assert (
        other["trained"]["m16"]["err_train_initial"] != first["trained"]["m16"]["err_train_initial"]
    )
    assert len(list((tmp_path / "inputs").glob("train-*.npz"))) == 2


@pytest.mark.slow
@pytest.mark.full
def test_full_experiment_checks_hold(tmp_path):
    # the full run (test_full_runs.py leaves barron_rate to this file)
    s = BR.run(config.load(BR.default_config()), tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and s["passed"] and not failed, failed
    assert {"trained_below_rate", "untrained_misses_rate"} < set(s["checks"])
    assert set(s["trained"]) == {"m16", "m64", "m256"}
