"""The docstring examples run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "mfnn.models.two_layer",
    "mfnn.simulate",
    "mfnn.domains",
    "mfnn.objectives.kernels",
    "mfnn.objectives.zero",
    "mfnn.dynamics.langevin",
    "mfnn.diagnostics.entropy",
    "mfnn.experiments.stationary_1d",
    "mfnn.experiments.langevin_gibbs",
    "mfnn.experiments.langevin_temperature",
    "mfnn.experiments.entropic_regime",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
