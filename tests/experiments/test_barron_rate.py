"""`barron_rate`: the closed forms of the measure against Monte Carlo, the expected error
V(pi)/N, the quick checks, the path norm along training, checks that fail when the
neurons do not come from a representing measure, resume, and bad parameters refused."""

import doctest
import importlib
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.diagnostics.norms import path_norm
from mfnn.experiments.barron_rate import BARRON_RATE as BR
from mfnn.experiments.barron_rate import (
    DEFAULTS,
    GaussianMixtureMeasure,
    abs_gaussian_mean,
    relu_gaussian_moments,
    sampled_error,
)
from mfnn.models import TwoLayer


def run(out, *overrides, resume=False):
    cfg = config.load(BR.default_config(), list(BR.quick) + list(overrides))
    return BR.run(cfg, out, resume=resume, progress=False)


def default_measure() -> GaussianMixtureMeasure:
    comps = DEFAULTS["measure"]
    return GaussianMixtureMeasure(
        np.array([c["weight"] for c in comps]),
        np.array([c["a"] for c in comps]),
        np.array([c["mean"] for c in comps]),
        np.array([c["std"] for c in comps]),
    )


def test_docstring_examples():
    mod = importlib.import_module("mfnn.experiments.barron_rate")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_gaussian_moments_against_monte_carlo():
    rng = np.random.default_rng(0)
    for mean, std in ((0.7, 0.4), (-1.2, 2.0), (0.0, 0.1)):
        z = mean + std * rng.standard_normal(2_000_000)
        m1, m2 = relu_gaussian_moments(np.array(mean), np.array(std**2))
        r = np.maximum(z, 0)
        assert float(m1) == pytest.approx(r.mean(), abs=4 * r.std() / 1414)
        assert float(m2) == pytest.approx((r**2).mean(), abs=4 * (r**2).std() / 1414)
        assert float(abs_gaussian_mean(mean, std)) == pytest.approx(
            np.abs(z).mean(), abs=4 * np.abs(z).std() / 1414
        )


def test_measure_closed_forms_against_a_huge_sample():
    # f, E_pi[a^2 relu^2], P(pi) and B2(pi)^2 against 10^6 neurons drawn from pi
    pi = default_measure()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (5, 4))
    a, w, b = pi.sample(np.random.default_rng(2), 1_000_000)
    units = a[None, :] * np.maximum(x @ w.T + b, 0)  # (5, 10^6)
    se = units.std(axis=1) / 1000
    np.testing.assert_array_less(np.abs(pi.f(x) - units.mean(axis=1)), 4 * se)
    sq = units**2
    np.testing.assert_array_less(
        np.abs(pi.second_moment(x) - sq.mean(axis=1)), 4 * sq.std(axis=1) / 1000
    )
    per = np.abs(a) * (np.abs(w).sum(axis=1) + np.abs(b))
    assert pi.path_norm() == pytest.approx(per.mean(), abs=4 * per.std() / 1000)
    assert pi.b2_squared() == pytest.approx((per**2).mean(), abs=4 * (per**2).std() / 1000)
    # the network path norm of the sample is the same statistic (`path_norm`)
    net = TwoLayer(d=4, activation="relu", scaling="mean_field", bias=True)
    theta = net.join(jnp.asarray(a), jnp.asarray(w), jnp.asarray(b))
    assert float(path_norm(net, theta)) == pytest.approx(per.mean(), rel=1e-10)


def test_mean_error_is_v_over_n():
    # E ||f - f_N||^2 = V(pi) / N, V = E_pi ||phi||^2 - ||f||^2, checked with 400 draws
    pi = default_measure()
    x = np.random.default_rng(3).uniform(-1, 1, (256, 4))
    fx = pi.f(x)
    v = np.mean(pi.second_moment(x)) - np.mean(fx**2)
    n = 20
    errs = [sampled_error(x, fx, *pi.sample(np.random.default_rng([4, s]), n)) for s in range(400)]
    assert np.mean(errs) == pytest.approx(v / n, abs=4 * np.std(errs) / 20)
    # and the inequality chain of the claim: V <= B2^2 <= 3 P^2
    assert v <= pi.b2_squared() <= 3 * pi.path_norm() ** 2


def test_sampled_error_blocks_and_padding_agree_with_the_direct_formula():
    pi = default_measure()
    x = np.random.default_rng(5).uniform(-1, 1, (64, 4))
    fx = pi.f(x)
    for n in (1, 7, 2048, 2049, 5000):
        a, w, b = pi.sample(np.random.default_rng(n), n)
        direct = np.mean((fx - np.maximum(x @ w.T + b, 0) @ a / n) ** 2)
        assert sampled_error(x, fx, a, w, b) == pytest.approx(direct, rel=1e-10)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("barron_rate_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert set(s["checks"]) == {"bound", "slope", "expected_error", "premise"}
    widths = np.array(s["widths"])
    assert widths.max() / widths.min() >= 100
    # the mean error sits on V/N, far below the bound (the bound is loose, see the claim)
    np.testing.assert_array_less(np.array(s["mean_error"]), np.array(s["bound"]))
    assert s["slack_3P2_over_V"] > 10
    # the sampled networks' path norm concentrates on P(pi) (law of large numbers)
    assert s["sampled_path_norm_mean"][-1] == pytest.approx(s["path_norm_pi"], rel=0.02)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


def test_quick_training_records_the_path_norm(quick):
    out, s = quick
    tr = s["training"]
    assert tr["status"] == "completed"
    # every step up to early_steps (the early run), then the main run's snapshots
    early = len(list((out / "runs" / "train_early" / "snapshots").glob("*.npz")))
    assert early == tr["early_steps"] + 1 == 41
    main = 2000 // 20 + 1 - (40 // 20 + 1)
    assert len(tr["path_norm"]) == len(tr["t"]) == early + main
    assert np.all(np.diff(tr["t"]) > 0) and tr["t"][1] == 0.5
    # the early run is the same trajectory as the main one where they overlap
    assert tr["early_run_path_norm_mismatch"] < 1e-10
    # the recorded numbers are `path_norm` of the snapshots
    last = sorted((out / "runs" / "train" / "snapshots").glob("*.npz"))[-1]
    arr = np.load(last)
    net = TwoLayer(d=4, activation="relu", scaling="mean_field", bias=True)
    theta = net.join(jnp.asarray(arr["a"]), jnp.asarray(arr["w"]), jnp.asarray(arr["b"]))
    assert tr["path_norm_final"] == pytest.approx(float(path_norm(net, theta)), rel=1e-12)
    # training fits f: the L2 error drops by orders of magnitude; the path norm grows from
    # its small start (a_0 ~ N(0, 0.1^2))
    assert tr["final_l2_error_test"] < 1e-2 * tr["initial_l2_error_train"]
    assert tr["path_norm_final"] > 5 * tr["path_norm_initial"]


def test_resume_reuses_the_training_run(quick):
    out, s = quick
    files = [out / "runs" / name / "metrics.csv" for name in ("train", "train_early")]
    before = [f.stat().st_mtime_ns for f in files]
    again = run(out, resume=True)
    assert [f.stat().st_mtime_ns for f in files] == before
    assert again["checks"] == s["checks"]
    assert again["training"] == s["training"]


def test_checks_fail_without_a_representing_measure(tmp_path):
    # neurons drawn with 4x the stds: not a representing measure of f, the error stops
    # decreasing at ||f - f_pi'||^2 and exceeds 3 P^2 / N at large N
    s = run(tmp_path, "experiment.params.sample_std_factor=4", "experiment.params.train=false")
    for name in ("bound", "slope", "expected_error"):
        assert s["checks"][name]["passed"] is False, name
    assert s["checks"]["premise"]["passed"] is True
    assert "training" not in s and s["passed"] is False


def test_premise_fails_outside_the_unit_box(tmp_path):
    # inputs in [-2, 2]^4: |w . x + b| <= ||w||_1 + |b| no longer holds
    s = run(
        tmp_path,
        "data.inputs.low=-2.0",
        "data.inputs.high=2.0",
        "experiment.params.train=false",
        "experiment.params.widths=[10, 100, 1000]",
    )
    assert s["checks"]["premise"]["passed"] is False
    assert s["checks"]["premise"]["value"]["input_sup_norm"] == 2.0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.measure=[]", "experiment.params.measure"),
        (
            "experiment.params.measure=[{weight: 1.0, a: 1.0, mean: [0, 0], std: 1.0}]",
            r"experiment.params.measure[0].mean",
        ),
        (
            "experiment.params.measure=[{weight: 0.5, a: 1.0, mean: [0, 0, 0, 0, 0], std: 1.0}]",
            "experiment.params.measure",
        ),
        (
            "experiment.params.measure=[{weight: 1.0, a: 1.0, mean: [0, 0, 0, 0, 0], std: 0}]",
            r"experiment.params.measure[0].std",
        ),
        ("experiment.params.widths=[10, 20, 50]", "experiment.params.widths"),
        ("experiment.params.widths=[10, 10, 1000]", "experiment.params.widths"),
        ("experiment.params.seeds=1", "experiment.params.seeds"),
        ("experiment.params.eval_points=3", "experiment.params.eval_points"),
        ("experiment.params.bound_factor=0", "experiment.params.bound_factor"),
        ("experiment.params.slope_tolerance=-1", "experiment.params.slope_tolerance"),
        ("experiment.params.train=yes please", "experiment.params.train"),
        ("experiment.params.early_steps=-1", "experiment.params.early_steps"),
        ("experiment.params.draws=3", "experiment.params"),
        ("data.inputs.law=gaussian", "data.inputs.law"),
        ("model.activation=tanh", "model.activation"),
        ("model.scaling=ntk", "model.scaling"),
        ("data.path=data.npz", "data.path"),
        ("record.snapshot_every=null", "record.snapshot_every"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    pattern = "".join("\\" + c if c in ".[]" else c for c in field)
    with pytest.raises(ConfigError, match=pattern):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


@pytest.mark.slow
def test_full_experiment_checks_hold(tmp_path):
    cfg = config.load(BR.default_config())
    s = BR.run(cfg, tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and not failed, failed
    assert math.isfinite(s["training"]["path_norm_final"])
