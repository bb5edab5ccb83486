"""One compile per shape: runs that differ only in a number share the compiled loop.

Every number of a run that does not change an array's shape (dt, the temperature and its
schedule, the drift scale, lambda, the birth-death rate, the domain's radius or bounds,
the scaling's gamma and output factor alpha, the number of steps when its record count
was already compiled, the seed) is a traced array, so a sweep over it lowers its programs
once. Counted with JAX's own monitoring events (`mfnn.cache.count_compilations`: programs
lowered, whether compiled or read from the persistent cache).
"""

from __future__ import annotations

import copy

import pytest

from mfnn import config
from mfnn.cache import count_compilations
from mfnn.runs import execute

LANGEVIN_BALL = {
    "seed": 0,
    "dtype": "float64",
    "model": {
        "width": 16,
        "activation": "tanh",
        "bias": False,
        "train_output": False,
        "init": {"w": {"law": "gaussian", "std": 0.5}},
    },
    "data": {"teacher": {"w": [[1.0, 0.0]], "alpha": [1.0]}, "n_train": 32, "noise": 0.1},
    "objective": {"l2": 0.05},
    "dynamics": {
        "integrator": "euler_maruyama",
        "langevin": {"beta": 20.0, "schedule": "geometric", "growth": 2.0, "period": 1.0,
                     "beta_max": 80.0, "drift_scale": 1.0},
        "domain": {"kind": "ball", "radius": 2.0},
        "dt": 0.01,
        "steps": 40,
    },
    "record": {"every": 10, "snapshot_every": 40},
}  # fmt: skip

BIRTH_DEATH_BOX = {
    "seed": 0,
    "dtype": "float64",
    "model": {"width": 16, "activation": "erf", "bias": False, "train_output": False},
    "data": {"population": {"inputs": "gaussian", "dim": 2, "method": "closed_form"},
             "teacher": {"w": [[1.0, 0.0]], "alpha": [1.0]}},
    "dynamics": {"dt": 0.05, "steps": 40, "birth_death": {"rate": 2.0},
                 "domain": {"kind": "box", "low": -2.0, "high": 2.0}},
    "record": {"every": 10, "snapshot_every": 40},
}  # fmt: skip

LAZY = {
    "seed": 0,
    "dtype": "float64",
    "model": {"width": 16, "activation": "relu", "scaling": "general", "gamma": 0.75,
              "alpha": 2.0},
    "data": {"teacher": {"w": [[1.0, 0.0]], "alpha": [1.0]}, "n_train": 32},
    "dynamics": {"dt": 0.05, "steps": 40},
    "record": {"every": 10, "snapshot_every": 40},
}  # fmt: skip

CASES = {
    "langevin_ball": (
        LANGEVIN_BALL,
        [
            ("dynamics.dt", 0.02),
            ("dynamics.langevin.beta", 40.0),
            ("dynamics.langevin.growth", 3.0),
            ("dynamics.langevin.period", 0.5),
            ("dynamics.langevin.beta_max", 100.0),
            ("dynamics.langevin.drift_scale", 2.0),
            ("objective.l2", 0.2),
            ("dynamics.domain.radius", 1.5),
            ("dynamics.steps", 80),
            ("data.noise", 0.3),
            ("seed", 3),
        ],
    ),
    "birth_death_box": (
        BIRTH_DEATH_BOX,
        [
            ("dynamics.birth_death.rate", 5.0),
            ("dynamics.domain.low", -1.0),
            ("dynamics.domain.high", 3.0),
            ("dynamics.dt", 0.1),
        ],
    ),
    "lazy": (LAZY, [("model.gamma", 0.6), ("model.alpha", 8.0), ("objective.l2", 0.1)]),
}


def _run(raw: dict, changes, out) -> None:
    raw = copy.deepcopy(raw)
    for key, value in changes:
        config.set_path(raw, key, value)
    execute(config.validate(raw), out, progress=False, make_figures=False)


@pytest.mark.parametrize(
    "case",
    [
        "langevin_ball",
        "lazy",
        pytest.param("birth_death_box", marks=pytest.mark.slow),  # ~10 s: a third compile
    ],
)
def test_a_sweep_over_a_number_compiles_once(case, tmp_path):
    raw, changes = CASES[case]
    _run(raw, [], tmp_path / "first")  # compiles (or reads the persistent cache)
    with count_compilations() as again:
        _run(raw, [], tmp_path / "again")
    assert again.lowered == 0, f"the same run lowered {again.lowered} programs again"
    lowered = {}
    for i, change in enumerate(changes):
        with count_compilations() as counted:
            _run(raw, [change], tmp_path / f"run{i}")
        lowered[change[0]] = counted.lowered
    assert lowered == dict.fromkeys(lowered, 0), f"programs lowered per changed number: {lowered}"


def test_a_static_change_is_counted(tmp_path):
    """Negative control: a change of shape (the width) must lower the loop again, so the
    counter above can fail."""
    _run(LAZY, [], tmp_path / "first")
    with count_compilations() as counted:
        _run(LAZY, [("model.width", 24)], tmp_path / "wider")
    assert counted.lowered >= 2  # the chunk loop and the recorder, at least
