"""The memory estimate (`mfnn.budget`): known answers, the refusal, and its place in build."""

import numpy as np
import pytest

from mfnn import budget, config
from mfnn.build import build
from mfnn.errors import ConfigError

# width 10, inputs in R^2, bias and output weight: D = 1 + 2 + 1 = 4 columns
SMALL = {
    "model": {"width": 10},
    "data": {"n_train": 20, "n_test": 5, "inputs": {"dim": 2}},
    "dynamics": {"steps": 100},
    "record": {"every": 10, "snapshot_every": 50},
}


def test_estimate_of_a_small_config_by_hand():
    est = budget.estimate(config.load(SMALL))
    parts = {k: p.bytes for k, p in est.parts.items()}
    assert parts == {
        "particles": 8 * 10 * 4 * 8,  # copies x m x D x float64
        "data": (20 + 5) * (2 + 1) * 8,  # (n_train + n_test) x (d + 1)
        "work": 4 * 20 * 10 * 8,  # 4 x max(n_train, n_test) x m
        "rows": 8 * 16 * (100 // 10 + 1),  # float64 x columns x records
        "snapshots": (100 // 50 + 2) * 10 * 4 * 8,  # on disk
    }
    assert est.total == 2560 + 600 + 6400 + 1408 and est.disk == 1280
    assert est.parts["work"].fields == ("data.n_train", "model.width")


def test_float32_halves_the_arrays_but_not_the_recorded_rows():
    est = budget.estimate(config.load(config.merge(SMALL, {"dtype": "float32"})))
    assert est.parts["particles"].bytes == 1280 and est.parts["work"].bytes == 3200
    assert est.parts["rows"].bytes == 1408  # rows are float64 on the host


def test_estimate_of_the_population_and_sgd_branches():
    teacher = {"w": [[1.0, 0.0], [0.0, 1.0]], "alpha": [0.5, 0.5]}
    closed = config.load(
        {
            "model": {"width": 6, "bias": False},
            "data": {"population": {"dim": 2}, "teacher": teacher},
        }  # fmt: skip
    )
    est = budget.estimate(closed)
    assert "data" not in est.parts  # the closed form holds no inputs
    assert est.parts["work"].bytes == 4 * (6 + 2) * 6 * 8  # m x (m + k) kernels
    quad = config.merge(
        {"model": {"width": 6}}, {"data": {"population": {"dim": 2, "method": "quadrature",
                                  "inputs": "uniform", "nodes": 3}, "teacher": teacher}}
    )  # fmt: skip
    est = budget.estimate(config.load(quad))
    assert est.parts["data"].bytes == 6**2 * (2 + 2) * 8  # the 2x rule of the error estimate
    assert est.parts["work"].bytes == 4 * 36 * 6 * 8
    sgd = config.merge(SMALL, {"dynamics": {"kind": "sgd", "batch_size": 64,
                                            "sampling": "online"}})  # fmt: skip
    assert budget.estimate(config.load(sgd)).parts["work"].bytes == 4 * 64 * 10 * 8
    w2 = config.merge(SMALL, {"record": {"w2": {"initial": True}}})
    assert budget.estimate(config.load(w2)).parts["w2_exact"].bytes == 8 * 10 * 10


def test_file_sizes_come_from_the_headers(tmp_path):
    np.savez(tmp_path / "p.npz", a=np.ones(33), w=np.ones((33, 2)), b=np.zeros(33))
    np.savez(tmp_path / "d.npz", x=np.ones((70, 2)), y=np.ones(70))
    raw = {"model": {"init": {"path": "p.npz"}}, "data": {"path": "d.npz"}}
    est = budget.estimate(config.load(raw), base=tmp_path)
    assert est.parts["particles"].bytes == 8 * 33 * 4 * 8
    assert est.parts["data"].bytes == 70 * 3 * 8 and est.parts["work"].bytes == 4 * 70 * 33 * 8


def test_refused_over_the_limit_with_the_estimate_the_limit_and_the_fields(monkeypatch):
    cfg = config.load(SMALL)
    total = budget.estimate(cfg).total
    monkeypatch.setenv(budget.ENV, str(total))
    assert budget.check_memory(cfg).total == total  # at the limit: accepted
    monkeypatch.setenv(budget.ENV, str(total - 1))
    with pytest.raises(ConfigError) as info:
        budget.check_memory(cfg)
    msg = str(info.value)
    assert budget.human(total) in msg and budget.human(total - 1) in msg
    assert "`data.n_train`" in msg and "`model.width`" in msg and budget.ENV in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match=r"`data.n_train`.*`model.width`"):
        build(cfg)  # build asks first


@pytest.mark.parametrize("text", ["lots", "-1", "1.5e9"])
def test_a_bad_limit_variable_is_a_config_error(monkeypatch, text):
    monkeypatch.setenv(budget.ENV, text)
    with pytest.raises(ConfigError, match=budget.ENV):
        budget.available_memory()


def test_the_machine_limit_is_positive_and_at_most_the_physical_memory(monkeypatch):
    monkeypatch.delenv(budget.ENV, raising=False)
    limit, source = budget.available_memory()
    import os

    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < limit <= physical and source


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["model.width=2000000000"], "`model.width`"),  # XLA aborted at 1e12 before
        (["data.n_train=2000000000"], "`data.n_train`"),
        (["dynamics.steps=2147483647", "record.every=1"], "`dynamics.steps`"),  # MemoryError
    ],
)
def test_absurd_sizes_are_refused_before_any_allocation(monkeypatch, overrides, field):
    monkeypatch.delenv(budget.ENV, raising=False)
    with pytest.raises(ConfigError, match=rf"more than the .* available.*{field}"):
        build(config.load({}, overrides))


def test_examples_fit_in_a_small_machine():
    # negative control: the shipped configs are far below 1 GiB
    from pathlib import Path

    root = Path(__file__).parents[1]
    paths = [*root.glob("examples/*.yaml"), *root.glob("src/mfnn/experiments/configs/*.yaml")]
    assert paths
    for path in paths:
        cfg = config.load(str(path))
        assert budget.estimate(cfg, path.parent).total < 2**30, path.name


def test_on_an_accelerator_its_memory_bounds_the_device_arrays(monkeypatch):
    cfg = config.load(SMALL)
    est = budget.estimate(cfg)
    assert est.device == 2560 + 600 + 6400 and est.host == 1408
    monkeypatch.delenv(budget.ENV, raising=False)
    monkeypatch.setattr(budget, "_device_memory", lambda: est.device - 1)
    with pytest.raises(ConfigError, match=r"available \(the accelerator's memory\): work"):
        budget.check_memory(cfg)
    monkeypatch.setattr(budget, "_device_memory", lambda: est.device)
    assert budget.check_memory(cfg) == est
    # the variable overrides both limits: it bounds the total
    monkeypatch.setenv(budget.ENV, str(est.total - 1))
    monkeypatch.setattr(budget, "_device_memory", lambda: 2**50)
    with pytest.raises(ConfigError, match=rf"available \({budget.ENV}\)"):
        budget.check_memory(cfg)


def test_particles_split_over_devices_are_bounded_per_device(monkeypatch):
    """devices = 2: each device holds half the particles and work and all of the data."""
    cfg = config.load(SMALL, ["devices=2"])
    per_device = (2560 + 6400) // 2 + 600
    monkeypatch.delenv(budget.ENV, raising=False)
    monkeypatch.setattr(budget, "_device_memory", lambda: per_device)
    assert budget.check_memory(cfg).device == 2560 + 600 + 6400
    monkeypatch.setattr(budget, "_device_memory", lambda: per_device - 1)
    with pytest.raises(ConfigError, match=r"per device of 2"):
        budget.check_memory(cfg)
