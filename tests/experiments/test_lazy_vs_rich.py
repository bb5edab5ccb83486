"""`lazy_vs_rich`: the quick checks hold, the table and figures come from the numbers,
checks fail when the run is too short or the start has no sign symmetry, resume reuses
completed sub-runs, bad parameters are refused with the field named."""

import doctest
import json

import jax.numpy as jnp
import numpy as np
import pytest

import mfnn.experiments.lazy_vs_rich as module
from mfnn import ConfigError, TwoLayer, config
from mfnn.experiments.lazy_vs_rich import LAZY_VS_RICH, initial_particles, predicted_slopes

E = LAZY_VS_RICH


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return E.run(cfg, tmp_path, resume=resume, progress=False)


def test_predicted_slopes():
    # movement m^(gamma - 1), kernel change m^(2 (gamma - 1)) (module CLAIM)
    assert predicted_slopes(0.5) == (-0.5, -1.0)
    assert predicted_slopes(0.75) == (-0.25, -0.5)
    assert predicted_slopes(1.0) == (0.0, 0.0)


def test_docstring_examples():
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("init", ["paired", "skewed", "iid"])
def test_initial_particles(init):
    cfg = config.load(E.default_config())
    p = initial_particles(cfg, 96, 3, init)
    assert p["a"].shape == (96,) and p["w"].shape == (96, 1) and p["b"].shape == (96,)
    model = TwoLayer(d=1, activation="softplus", scaling="ntk")
    theta = model.join(*(jnp.asarray(p[k]) for k in ("a", "w", "b")))
    f0 = np.asarray(model.predict(theta, jnp.linspace(-1, 1, 11, dtype=jnp.float64)[:, None]))
    a = p["a"]
    if init == "iid":
        assert np.abs(f0).max() > 0.1  # an O(1) random initial function under ntk
        return
    assert np.abs(f0).max() <= 1e-12  # the groups cancel: f_0 = 0
    if init == "paired":
        np.testing.assert_array_equal(a[48:], -a[:48])  # sign-symmetric
    else:
        assert set(np.round(a * np.sqrt(2), 12)) == {-1.0, 2.0}
        assert np.mean(a**2) == pytest.approx(1.0) and np.mean(a**3) > 0.5  # skewed
    again = initial_particles(cfg, 96, 3, init)  # deterministic in (seed, m)
    assert all(np.array_equal(p[k], v) for k, v in again.items())
    other = initial_particles(cfg, 96, 4, init)
    assert not np.array_equal(p["w"], other["w"])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lazy_vs_rich_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    for sc in ("ntk", "general", "mean_field"):
        for kind in ("movement_slope", "kernel_slope", "function_moves"):
            assert f"{kind}_{sc}" in s["checks"]
    assert "ordering_at_largest_m" in s["checks"] and "energy_identity" in s["checks"]
    assert len(s["runs"]) == 3 * 3  # scalings x widths x 1 seed
    st = s["stats"]
    assert st["ntk"]["movement_predicted"] == -0.5 and st["general"]["gamma"] == 0.75
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


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
        # the per-run value at the largest width (one seed) is the table's
        assert row["movement"] == s["runs"][f"{row['scaling']}_m1024_s0"]["movement"]
    rows = table["rows"]
    assert rows[0]["movement"] < rows[1]["movement"] < rows[2]["movement"]


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


def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, after = resume_after_interrupt(out, "general_m256_s0", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


def test_function_moves_fails_when_the_run_is_too_short(tmp_path):
    # T = 0.1: the loss has barely moved, so "f moved O(1) by T" fails (the slopes, a
    # statement about any T > 0, still hold)
    s = run(
        tmp_path,
        "experiment.params.scalings=[ntk]",
        "dynamics.steps=2",
        "record.every=1",
    )
    assert s["checks"]["function_moves_ntk"]["passed"] is False
    assert s["checks"]["function_moves_ntk"]["value"] > 0.5
    assert s["checks"]["movement_slope_ntk"]["passed"] is True
    assert s["passed"] is False


def test_kernel_slope_fails_without_sign_symmetry(tmp_path):
    # a skewed start (a = (-1, -1, 2) / sqrt 2 per (w, b)): f_0 = 0 still, but the first-order
    # kernel change no longer averages out; the ntk slope (measured -0.68) is far from -1
    s = run(
        tmp_path,
        "experiment.params.scalings=[ntk]",
        "experiment.params.init=skewed",
        "experiment.params.widths=[96, 384, 1536]",
    )
    assert s["checks"]["movement_slope_ntk"]["passed"] is True
    assert s["checks"]["kernel_slope_ntk"]["passed"] is False
    assert s["checks"]["kernel_slope_ntk"]["value"] > -0.8


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
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute
