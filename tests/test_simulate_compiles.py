"""A run compiles its chunk once: every chunk of a run reuses the first one's program."""

import logging

import jax
import jax.numpy as jnp

import mfnn
from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, Recorder, TwoLayer


def test_every_chunk_of_a_run_reuses_one_compiled_program(caplog):
    """Four chunks, one compilation of the chunk loop (`advance`). Before the fix, the
    first chunk's ``bad`` was weakly typed and the second chunk compiled again."""
    x = jax.random.normal(jax.random.key(0), (37, 3))
    data = DataSet(x, jnp.sign(x[:, 0]))
    flow = GradientFlow(TwoLayer(d=3), EmpiricalRisk(data), FullBatch(data))
    theta = jax.random.normal(jax.random.key(1), (29, 5))  # shapes no other test uses
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        traj = mfnn.simulate(
            flow, Euler(), theta, dt=1e-3, steps=80, key=jax.random.key(2),
            recorder=Recorder(every=10), chunk=20,
        )  # fmt: skip
    assert traj.status == "completed"
    compiles = [r for r in caplog.records if "Compiling jit(advance)" in r.getMessage()]
    assert len(compiles) == 1, [r.getMessage()[:200] for r in compiles]
