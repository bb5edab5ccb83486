"""`lazy_vs_rich`: the initial particles, checks that fail on doctored statistics, bad params
refused with the field named (default tier; the predicted slopes and the width fits:
tests/diagnostics/test_coupling.py); the quick run, its table and shared start, resume, a
run too short and a start without sign symmetry (slow)."""

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.build import init_laws
from mfnn.diagnostics import width_exponents
from mfnn.experiments.lazy_vs_rich import LAZY_VS_RICH, initial_particles
from mfnn.study import Study

E = LAZY_VS_RICH


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return E.run(cfg, tmp_path, resume=resume, progress=False)


def study(tmp_path, *overrides):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return Study(E, cfg, E.validate_params(cfg), tmp_path, progress=False)


# the same k = m / group = 48 draws per block for every init: one compile of the samplers
@pytest.mark.parametrize(("init", "m"), [("paired", 96), ("skewed", 144), ("iid", 48)])
def test_initial_particles(init, m):
    cfg = config.load(E.default_config())
    p = initial_particles(cfg, m, 3, init)
    assert p["a"].shape == (m,) and p["w"].shape == (m, 1) and p["b"].shape == (m,)
    x = np.linspace(-1, 1, 11)  # f_0(x) = m^-1/2 sum_j a_j softplus(w_j x + b_j) (ntk)
    f0 = np.logaddexp(0, p["w"][:, 0, None] * x + p["b"][:, None]).T @ p["a"] / np.sqrt(m)
    a = p["a"]
    if init == "iid":
        assert np.abs(f0).max() > 0.1  # an O(1) random initial function under ntk
    else:
        assert np.abs(f0).max() <= 1e-12  # the groups cancel: f_0 = 0
    if init == "paired":
        np.testing.assert_array_equal(a[48:], -a[:48])  # sign-symmetric
    elif init == "skewed":
        assert set(np.round(a * np.sqrt(2), 12)) == {-1.0, 2.0}
        assert np.mean(a**2) == pytest.approx(1.0) and np.mean(a**3) > 0.5  # skewed
    # (w, b) of each group are the library's draws: the law of model.init.<block> with the
    # key fold_in(fold_in(key(seed), m), block index)
    laws, key = init_laws(cfg.model.init), jax.random.fold_in(jax.random.key(3), m)
    for i, blk in enumerate(("a", "w", "b")):
        shape = (48, 1) if blk == "w" else (48,)
        want = np.asarray(laws[blk].sample(jax.random.fold_in(key, i), shape, jnp.float64))
        if blk != "a" or init != "skewed":
            np.testing.assert_array_equal(p[blk][:48], want)
    again = initial_particles(cfg, m, 3, init)  # deterministic in (seed, m)
    assert all(np.array_equal(p[k], v) for k, v in again.items())
    other = initial_particles(cfg, m, 4, init)
    assert not np.array_equal(p["w"], other["w"])
    cfg = config.load(E.default_config(), ["model.bias=false"])
    assert set(initial_particles(cfg, m, 3, init)) == {"a", "w"}


def _stats(**doctored):
    """Statistics as `analyze` returns them, at the predicted slopes unless doctored
    (``<stem>_<scaling>=slope`` or ``loss_<scaling>=ratio``)."""
    stats = {}
    for sc, g in (("ntk", 0.5), ("general", 0.75), ("mean_field", 1.0)):
        pm, pk = width_exponents(g)
        big = {"ntk": 0.02, "general": 0.1, "mean_field": 0.6}[sc]
        stats[sc] = {
            "gamma": g,
            "movement_slope": doctored.get(f"movement_{sc}", pm),
            "movement_predicted": pm,
            "kernel_slope": doctored.get(f"kernel_{sc}", pk),
            "kernel_predicted": pk,
            "movement": [big],
            "kernel_change": doctored.get(f"kc_{sc}", [big**2]),
            "max_loss_ratio": doctored.get(f"loss_{sc}", 0.15),
        }
    return {"stats": stats}


@pytest.mark.parametrize(
    ("doctored", "failing"),
    [
        ({}, set()),
        ({"movement_ntk": -0.25}, {"movement_slope_ntk"}),
        ({"kernel_ntk": -0.6}, {"kernel_slope_ntk"}),  # a start without sign symmetry
        ({"kernel_general": -0.25}, {"kernel_slope_general"}),
        ({"movement_mean_field": -0.3}, {"movement_slope_mean_field"}),
        ({"kernel_ntk": float("nan")}, {"kernel_slope_ntk"}),
        ({"kc_general": [0.5]}, {"ordering_at_largest_m"}),
        ({"loss_general": 0.6}, {"function_moves_general"}),  # a run too short
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, doctored, failing):
    checks = E.evaluate(study(tmp_path), _stats(**doctored))
    assert len(checks) == 3 * 3 + 1
    assert {k for k, v in checks.items() if not v["passed"]} == failing


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.widths=[64, 256]", "experiment.params.widths"),
        ("experiment.params.widths=[64, 64, 256]", "experiment.params.widths"),
        ("experiment.params.widths=[64, 255, 1024]", "experiment.params.widths"),
        ("experiment.params.seeds=[]", "experiment.params.seeds"),
        ("experiment.params.gamma=1.0", "experiment.params.gamma"),
        ("experiment.params.scalings=[lazy]", "experiment.params.scalings"),
        ("experiment.params.init=zero", "experiment.params.init"),
        ("experiment.params.slope_tolerance=0", "experiment.params.slope_tolerance"),
        ("experiment.params.loss_ratio=2", "experiment.params.loss_ratio"),
        ("experiment.params.rate=1", "experiment.params"),
        ("objective.l2=0.1", "objective.l2"),
        ("model.train_output=false", "model.train_output"),
        ("model.init.path=x.npz", "model.init.path"),
        ("record.every=30", "record.every"),
        ("dynamics.domain={kind: ball, radius: 3.0}", "dynamics.domain"),
        ("data.target=zero", "data.target"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_params_are_sorted_and_the_declaration_lists_every_check():
    cfg = config.load(E.default_config(), ["experiment.params.scalings=[mean_field, ntk]"])
    p = E.validate_params(cfg)
    assert p.scalings == ("ntk", "mean_field") and p.widths == tuple(sorted(p.widths))
    raw = copy.deepcopy(E.default_config())
    assert raw["experiment"]["params"]["slope_tolerance"] == 0.15
    text = E.describe()
    for name in ("movement_slope_*", "kernel_slope_*", "ordering_at_largest_m"):
        assert name in text


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lazy_vs_rich_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    for sc in ("ntk", "general", "mean_field"):
        for kind in ("movement_slope", "kernel_slope", "function_moves"):
            assert f"{kind}_{sc}" in s["checks"]
        for m in (64, 256, 1024):
            for seed in (0, 1, 2):
                assert f"{sc}_m{m}_s{seed}/energy_identity" in s["checks"]
    assert "ordering_at_largest_m" in s["checks"]
    assert len(s["runs"]) == 3 * 3 * 3  # scalings x widths x seeds
    st = s["stats"]
    assert st["ntk"]["movement_predicted"] == -0.5 and st["general"]["gamma"] == 0.75
    lo, hi = st["ntk"]["movement_slope_ci95"]
    assert lo < st["ntk"]["movement_slope"] < hi
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_quick_table_is_built_from_the_numbers(quick):
    out, s = quick
    table = s["table"]
    assert [r["scaling"] for r in table["rows"]] == ["ntk", "general", "mean_field"]
    text = (out / "table.md").read_text()
    assert text == table["markdown"]
    for row in table["rows"]:
        st = s["stats"][row["scaling"]]
        assert row["movement"] == st["movement"][-1]
        assert row["kernel_slope"] == st["kernel_slope"]
        assert f"{row['movement']:.3g}" in text and f"{row['kernel_change']:.3g}" in text
        # the per-run values at the largest width, averaged over the seeds, are the table's
        per_seed = [s["runs"][f"{row['scaling']}_m1024_s{sd}"]["movement"] for sd in (0, 1, 2)]
        assert row["movement"] == pytest.approx(np.mean(per_seed), rel=1e-12)
    rows = table["rows"]
    assert rows[0]["movement"] < rows[1]["movement"] < rows[2]["movement"]


@pytest.mark.slow
def test_quick_runs_share_the_paired_start(quick):
    # the three scalings start from the same particles, whose function is 0
    out, _ = quick
    first = {}
    for sc in ("ntk", "general", "mean_field"):
        z = np.load(out / "runs" / f"{sc}_m256_s0" / "snapshots" / "step_00000000.npz")
        first[sc] = {k: z[k] for k in z.files}
    for sc in ("general", "mean_field"):
        for k in ("a", "w", "b"):
            np.testing.assert_array_equal(first[sc][k], first["ntk"][k])
    a = first["ntk"]["a"]
    np.testing.assert_array_equal(a[128:], -a[:128])
    (path,) = (out / "inputs").glob("m256_s0-*.npz")  # named by a digest of its content
    z = np.load(path)
    np.testing.assert_array_equal(z["a"], a)


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, _ = resume_after_interrupt(out, "general_m256_s0", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_function_moves_fails_when_the_run_is_too_short(tmp_path):
    # T = 0.1: the loss has barely moved, so "f moved O(1) by T" fails (the slopes, a
    # statement about any T > 0, still hold)
    s = run(
        tmp_path,
        "experiment.params.scalings=[ntk]",
        "experiment.params.seeds=[0]",
        "dynamics.steps=2",
        "record.every=1",
    )
    assert s["checks"]["function_moves_ntk"]["passed"] is False
    assert s["checks"]["function_moves_ntk"]["value"] > 0.5
    assert s["checks"]["movement_slope_ntk"]["passed"] is True
    assert s["passed"] is False


@pytest.mark.slow
def test_kernel_slope_fails_without_sign_symmetry(tmp_path):
    # a skewed start (a = (-1, -1, 2) / sqrt 2 per (w, b)): f_0 = 0 still, but the first-order
    # kernel change no longer averages out; the ntk slope is far from -1
    s = run(
        tmp_path,
        "experiment.params.scalings=[ntk]",
        "experiment.params.init=skewed",
        "experiment.params.widths=[96, 384, 1536]",
    )
    assert s["checks"]["movement_slope_ntk"]["passed"] is True
    assert s["checks"]["kernel_slope_ntk"]["passed"] is False
    assert s["checks"]["kernel_slope_ntk"]["value"] > -0.8
