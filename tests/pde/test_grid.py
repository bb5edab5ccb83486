"""`mfnn.pde.grid`: the folded initial law is the law of reflected particles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.domains import fold
from mfnn.errors import ConfigError
from mfnn.measure import Gaussian, Uniform
from mfnn.pde.grid import Grid


@pytest.mark.parametrize("law", [Gaussian(0.3, 0.8), Uniform(-2.5, 1.7)])
def test_folded_law_is_the_law_of_folded_samples(law):
    """Cell masses of the fold of a law that overshoots [-1, 1] (several images) against
    the histogram of 2e6 folded samples: within 5 binomial standard errors per cell."""
    grid = Grid([-1.0], [1.0], [40], bounded=True)
    rho = np.asarray(grid.density_of_laws([law], fold=True))
    n = 2_000_000
    x = law.sample(jax.random.key(0), (n,), jnp.float64)
    y = np.asarray(fold(x, -1.0, 1.0))
    hist, _ = np.histogram(y, bins=grid.edges(0))
    p = rho * grid.volume
    z = (hist / n - p) / np.sqrt(p * (1 - p) / n)
    assert np.max(np.abs(z)) < 5, z
    truncated = np.asarray(grid.density_of_laws([law])) * grid.volume  # the negative control
    z_bad = (hist / n - truncated) / np.sqrt(truncated * (1 - truncated) / n)
    assert np.max(np.abs(z_bad)) > 20


def test_a_2d_ball_refuses_an_initial_law_outside_it():
    from mfnn import config
    from mfnn.pde.run import build_pde

    raw = {
        "model": {"width": 8, "bias": True, "train_output": False,
                  "init": {"w": {"std": 1.0}, "b": {"law": "uniform", "low": -1, "high": 1}}},
        "data": {"population": {"inputs": "uniform", "dim": 1, "method": "quadrature",
                                "nodes": 8},
                 "teacher": {"w": [[1.0]], "alpha": [1.0], "activation": "relu"}},
        "dynamics": {"kind": "pde", "dt": 0.001, "steps": 10,
                     "domain": {"kind": "ball", "radius": 1.5}, "grid": {"cells": [16, 16]}},
    }  # fmt: skip
    with pytest.raises(ConfigError, match="outside the ball of radius 1.5"):
        build_pde(config.load(raw))
