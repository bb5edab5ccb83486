"""The small 1-D `dynamics.kind: pde` config the tests share: a width-8 tanh student with
fixed output weights against a 2-neuron tanh teacher, population risk by quadrature on
U[-1, 1], a little l2 and a Langevin temperature, 120 cells on [-4, 4]."""

from mfnn import config

PDE_1D = {
    "model": {
        "width": 8,
        "activation": "tanh",
        "bias": False,
        "train_output": False,
        "init": {"w": {"std": 0.5}},
    },
    "data": {
        "population": {"inputs": "uniform", "dim": 1, "method": "quadrature", "nodes": 16},
        "teacher": {"w": [[1.5], [-0.5]], "alpha": [0.6, 0.4], "activation": "tanh"},
    },
    "objective": {"l2": 0.01},
    "dynamics": {
        "kind": "pde",
        "dt": 0.004,
        "steps": 200,
        "langevin": {"beta": 100},
        "grid": {"cells": 120, "low": -4, "high": 4},
    },
    "record": {"every": 20, "chunk": 40},
}


def pde_1d(changes: dict) -> dict:
    """`PDE_1D` with ``changes`` merged in (nested keys replace, the rest kept)."""
    return config.merge(PDE_1D, changes)
