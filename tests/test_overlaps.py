"""The recorder's teacher-student overlaps Q = w w^T, R = w w*^T, T = w* w*^T."""

import csv

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import config
from mfnn.build import build
from mfnn.errors import ConfigError
from mfnn.recorder import OverlapMonitor
from mfnn.rundir import snapshot_path
from mfnn.runs import execute

S = 1.0 / np.sqrt(2.0)


def test_full_overlaps_are_the_entries():
    rng = np.random.default_rng(0)
    w, ws = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    mon = OverlapMonitor(jnp.asarray(ws), 3)
    assert mon.full
    got = mon(jnp.asarray(w))
    q, r, t = w @ w.T, w @ ws.T, ws @ ws.T
    assert list(got) == list(mon.names())
    assert len(got) == 6 + 6 + 3
    np.testing.assert_allclose(float(got["Q_1_3"]), q[0, 2], rtol=1e-14)
    np.testing.assert_allclose(float(got["R_3_2"]), r[2, 1], rtol=1e-14)
    np.testing.assert_allclose(float(got["T_2_2"]), t[1, 1], rtol=1e-14)
    # a student equal to the teacher: R = Q = T entry by entry
    same = OverlapMonitor(jnp.asarray(ws), 2)(jnp.asarray(ws))
    for j in (1, 2):
        for n in (1, 2):
            a, b = sorted((j, n))
            assert float(same[f"R_{j}_{n}"]) == pytest.approx(float(same[f"T_{a}_{b}"]))


def test_summary_overlaps_against_numpy():
    rng = np.random.default_rng(1)
    m, k, d = 20, 3, 6
    w, ws = rng.normal(size=(m, d)), rng.normal(size=(k, d))
    mon = OverlapMonitor(jnp.asarray(ws), m)
    assert not mon.full
    got = {key: float(v) for key, v in mon(jnp.asarray(w)).items()}
    q, r, t = w @ w.T, w @ ws.T, ws @ ws.T
    off = q[~np.eye(m, dtype=bool)]
    np.testing.assert_allclose(got["Q_diag"], np.trace(q) / m, rtol=1e-13)
    np.testing.assert_allclose(got["Q_offdiag"], np.sqrt(np.mean(off**2)), rtol=1e-13)
    np.testing.assert_allclose(got["R_norm"], np.linalg.norm(r) / np.sqrt(m), rtol=1e-13)
    cos = r / np.sqrt(np.outer(np.diag(q), np.diag(t)))
    np.testing.assert_allclose(got["R_cos"], cos.max(0).mean(), rtol=1e-13)
    eig = np.sort(np.linalg.eigvalsh(q / m))[::-1]
    for i in range(3):
        np.testing.assert_allclose(got[f"Q_eig_{i + 1}"], eig[i], rtol=1e-10, atol=1e-12)
    # students that contain every teacher direction: R_cos = 1; a rotated one: < 1
    aligned = np.concatenate([ws, rng.normal(size=(m - k, d))])
    assert float(mon(jnp.asarray(aligned))["R_cos"]) == pytest.approx(1.0, abs=1e-12)
    assert float(mon(jnp.asarray(w))["R_cos"]) < 0.99


def _raw(overlaps=True, width=2):
    return {
        "model": {"width": width, "activation": "erf", "bias": False, "train_output": False,
                  "activation_scale": float(S)},
        "data": {"target": "teacher", "teacher": {"w": [[0.3, 0.1, 0.0], [0.0, -0.2, 0.4]]},
                 "inputs": {"law": "gaussian", "dim": 3}, "n_train": 64, "n_test": 0},
        "dynamics": {"steps": 20, "dt": 0.5},
        "record": {"every": 10, "overlaps": overlaps, "snapshot_every": 10},
    }  # fmt: skip


def test_run_records_overlaps_of_its_snapshots(tmp_path):
    cfg = config.load(_raw(), [])
    out = tmp_path / "run"
    execute(cfg, out, progress=False)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert "Q_1_2" in rows[0] and "R_2_1" in rows[0] and "T_1_2" in rows[0]
    last = rows[-1]
    snap = np.load(snapshot_path(out, int(last["step"])))
    w = snap["w"]
    np.testing.assert_allclose(float(last["Q_1_2"]), w[0] @ w[1], rtol=1e-9)
    np.testing.assert_allclose(float(last["R_2_1"]), w[1] @ [0.3, 0.1, 0.0], rtol=1e-9)
    assert float(rows[0]["T_1_2"]) == pytest.approx(0.3 * 0.0 + 0.1 * -0.2 + 0.0)


def test_overlaps_need_a_two_layer_teacher():
    raw = _raw()
    raw["data"] = {"target": "sign", "inputs": {"dim": 1}, "n_train": 8, "n_test": 0}
    with pytest.raises(ConfigError, match="record.overlaps"):
        config.load(raw, [])
    raw = {"model": {"kind": "wide_resnet", "depth": 2, "width": 2, "activation": "tanh"},
           "record": {"overlaps": True}}  # fmt: skip
    with pytest.raises(ConfigError, match="record.overlaps"):
        config.load(raw, [])


def test_overlaps_off_by_default():
    built = build(config.load(_raw(overlaps=False), []))
    assert built.recorder.overlaps is None
    assert "Q_1_1" not in built.recorder.names()
