"""Every registered experiment, full size: it completes and every check of its claim holds.

Experiments whose full run is asserted with more than this (birth_death_speedup,
langevin_temperature, langevin_gibbs, entropic_regime, barron_rate) keep their own full
test and are left out here, so no full run is paid twice.
"""

import pytest

from mfnn import config
from mfnn.experiments import EXPERIMENTS

OWN_FULL_TEST = {
    "birth_death_speedup",
    "langevin_temperature",
    "langevin_gibbs",
    "entropic_regime",
    "barron_rate",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(EXPERIMENTS) - OWN_FULL_TEST))
@pytest.mark.full
def test_full_experiment_checks_hold(tmp_path, name):
    experiment = EXPERIMENTS[name]
    s = experiment.run(config.load(experiment.default_config()), tmp_path, progress=False)
    failed = {
        k: v for k, v in s["checks"].items() if not v["passed"] and not v.get("informational")
    }
    assert s["status"] == "completed" and s["passed"] and not failed, failed
