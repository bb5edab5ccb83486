"""A run writes ``predictions.npz``: f on the test and training inputs, final and at every
snapshot, equal to the model applied to the final particles and to the snapshot files."""

import numpy as np

from mfnn import config, runs
from mfnn.measure import load_particles
from mfnn.rundir import list_snapshots

CFG = {
    "model": {"width": 12, "activation": "tanh"},
    "data": {"n_train": 16, "n_test": 9},
    "dynamics": {"steps": 40, "dt": 0.05},
    "record": {"every": 10, "snapshot_every": 20},
}


def test_predictions_are_the_network_on_the_data(tmp_path):
    traj, built, _ = runs.execute(config.load(CFG), tmp_path / "r", progress=False,
                                  make_figures=False)  # fmt: skip
    with np.load(tmp_path / "r" / "predictions.npz") as z:
        p = dict(z)
    assert p["x_test"].shape == (9, 1) and p["f_test"].shape == (9,)
    np.testing.assert_array_equal(p["y_train"], np.asarray(built.train.y))
    final = built.model.predict(traj.state.theta, built.test.x)
    np.testing.assert_allclose(p["f_test"], np.asarray(final), rtol=1e-13, atol=1e-15)
    snaps = list_snapshots(tmp_path / "r")
    assert list(p["snapshot_steps"]) == sorted(snaps) == [0, 20, 40]
    theta20 = load_particles(snaps[20], built.model)
    np.testing.assert_allclose(
        p["f_train_snapshots"][1], np.asarray(built.model.predict(theta20, built.train.x))
    )
    # the predictions moved: training changed f (a run that did nothing would not)
    assert np.max(np.abs(p["f_train_snapshots"][-1] - p["f_train_snapshots"][0])) > 1e-3
    # the training loss is the mean square of f - y on the training set
    loss = 0.5 * np.mean((p["f_train"] - p["y_train"]) ** 2)
    assert abs(loss - float(np.loadtxt(tmp_path / "r" / "metrics.csv", delimiter=",",
                                        skiprows=1)[-1, 2])) < 1e-12  # fmt: skip


def test_cli_run_writes_predictions(tmp_path):
    """`mfnn run CONFIG` builds once and hands the build to the run: still its own build."""
    import yaml
    from typer.testing import CliRunner

    from mfnn.cli import app

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CFG))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "r" / "predictions.npz") as z:
        assert z["f_test"].shape == (9,)


def test_cli_run_gives_the_signal_handlers_back(tmp_path):
    """An in-process `mfnn run` installs its SIGINT/SIGTERM handlers for the run only: a
    later caller (a sweep in the same process) sees its own again."""
    import signal

    import yaml
    from typer.testing import CliRunner

    from mfnn.cli import app

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CFG))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
