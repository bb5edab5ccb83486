"""The closed-form population risk blocked over particle pairs: the same risk, velocity,
first variation and decomposition as the whole m x m kernel to round-off, and memory
O(block m) (m = 10^5 compiles to under 1 GB of buffers, where m^2 doubles are 80 GB)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, GaussianInputs, Teacher, TwoLayer
from mfnn.objectives import PopulationRisk
from mfnn.objectives.population import (
    DEVICE_PAIR_BYTES,
    MIN_PAIR_ROWS,
    PAIR_BYTES,
    map_row_blocks,
    pair_block,
)
from tiers import covering

M, D, K = 23, 4, 3


def _problem(key, activation, train_output, scaling, dtype=jnp.float64):
    kt, kw = jax.random.split(key)
    teacher = Teacher(
        np.asarray(jax.random.normal(kt, (K, D))),
        alpha=np.array([0.5, 0.3, 0.2]),
        activation=activation,
    )
    net = TwoLayer(
        d=D, activation=activation, bias=False, train_output=train_output, scaling=scaling
    )
    theta = jax.random.normal(kw, (M, net.dim), dtype)
    return teacher, net, theta


def _objective(teacher, net, block, dtype=jnp.float64):
    return PopulationRisk.make(
        teacher, GaussianInputs(D), "closed_form", model=net, l2=0.2, block=block, dtype=dtype
    )


def _close(got, want, rtol):
    scale = float(jnp.max(jnp.abs(want)))
    assert float(jnp.max(jnp.abs(got - want))) <= rtol * scale, (got, want)


@pytest.mark.parametrize(
    "activation,train_output,scaling",
    covering(["relu", "erf"], [True, False], ["mean_field", "ntk"]),
)
@pytest.mark.parametrize("block", [1, 5, 22])  # 23 = 4*5 + 3 = 22 + 1: rows left over
def test_blocked_closed_form_equals_unblocked(key, activation, train_output, scaling, block):
    teacher, net, theta = _problem(key, activation, train_output, scaling)
    whole, blocked = _objective(teacher, net, M), _objective(teacher, net, block)
    v0, r0 = whole.velocity(net, theta)
    v1, r1 = blocked.velocity(net, theta)
    _close(v1, v0, 1e-12)
    np.testing.assert_allclose(r1, r0, rtol=1e-12)
    np.testing.assert_allclose(blocked.risk(net, theta), r0, rtol=1e-12)
    for name, value in whole.decomposition(net, theta).items():
        np.testing.assert_allclose(blocked.decomposition(net, theta)[name], value, rtol=1e-12)
    pts = jax.random.normal(jax.random.fold_in(key, 5), (9, net.dim))
    _close(blocked.first_variation(net, theta, pts), whole.first_variation(net, theta, pts), 1e-12)


def test_blocked_closed_form_float32(key):
    teacher, net, theta = _problem(key, "relu", True, "mean_field", jnp.float32)
    v0, r0 = _objective(teacher, net, M, jnp.float32).velocity(net, theta)
    v1, r1 = _objective(teacher, net, 4, jnp.float32).velocity(net, theta)
    _close(v1, v0, 1e-5)
    np.testing.assert_allclose(r1, r0, rtol=1e-5)


def test_blocked_velocity_is_minus_the_gradient(key):
    """The blocked velocity is -m^(2 gamma - 1) grad E by finite differences of the
    energy: the symmetric-kernel shortcut (grad of sum_{j in J, k} U with theta_k fixed)
    is checked against the definition, not only against the unblocked code."""
    teacher, net, theta = _problem(key, "erf", True, "mean_field")
    obj = _objective(teacher, net, 4)
    v, _ = obj.velocity(net, theta)
    direction = jax.random.normal(jax.random.fold_in(key, 8), theta.shape)
    eps = 1e-6
    plus, minus = theta + eps * direction, theta - eps * direction
    slope = (obj.energy(net, plus) - obj.energy(net, minus)) / (2 * eps)
    # mean_field: v_j = -m dE/dtheta_j, so dE = -(1/m) sum_j v_j . delta_j
    np.testing.assert_allclose(-jnp.sum(v * direction) / M, slope, rtol=1e-7)


def test_map_row_blocks():
    rows = jnp.arange(23.0)[:, None] * jnp.ones((1, 2))

    def fn(p):
        return 2 * p, jnp.sum(p)

    for block in (1, 5, 23, 50):
        doubled, total = map_row_blocks(fn, rows, block)
        np.testing.assert_array_equal(doubled, 2 * rows)
        assert float(total) == float(jnp.sum(rows))


def test_pair_block_choice():
    assert pair_block(64, 8, platform="cpu") == 64  # 32 KiB: the whole m x m kernel
    for m, size in [(1024, 8), (4096, 4), (10**4, 8)]:
        block = pair_block(m, size, platform="cpu")
        assert MIN_PAIR_ROWS <= block < m
        assert block * m * size <= PAIR_BYTES or block == MIN_PAIR_ROWS
    assert pair_block(10**5, 8, platform="cpu") == MIN_PAIR_ROWS
    # off the CPU the budget is memory only: m = 4096 forms the whole kernel (128 MiB)
    assert pair_block(4096, 8, platform="gpu") == 4096
    assert pair_block(10**5, 8, platform="gpu") * 10**5 * 8 <= DEVICE_PAIR_BYTES


def test_wide_closed_form_fits_in_memory():
    """m = 10^5 in float64: the compiled velocity and risk need O(block m) buffers (the
    whole kernel would be m^2 x 8 B = 80 GB); compiled only, not run."""
    teacher = Teacher(np.eye(K, 32), np.ones(K) / K, activation="relu")
    net = TwoLayer(d=32, activation="relu", bias=False, train_output=True)
    obj = PopulationRisk.make(teacher, GaussianInputs(32), "closed_form", model=net)
    spec = jax.ShapeDtypeStruct((10**5, net.dim), jnp.float64)
    for fn in (lambda th: obj.velocity(net, th), lambda th: obj.risk(net, th)):
        memory = jax.jit(fn).lower(spec).compile().memory_analysis()
        assert memory.temp_size_in_bytes < 1e9


def test_bad_block():
    teacher = Teacher(np.eye(2, D), np.ones(2) / 2, activation="relu")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="`data.population.block`"):
            PopulationRisk.make(teacher, GaussianInputs(D), "closed_form", block=bad)
