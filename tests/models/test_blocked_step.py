"""The tiled full-batch step: a pass over tiles of data rows (forward, residual and each
tile's share of every particle's velocity in one go) gives the velocity and the loss of
the unblocked pass to round-off, for every tile size, layout and dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfnn
from mfnn import ConfigError, DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, TwoLayer
from mfnn.models.base import MIN_TILE, TILE_BYTES, row_tile
from mfnn.objectives.risk import weighted_velocity
from tiers import covering

N, M, D = 50, 13, 3
RTOL = {"float64": 1e-12, "float32": 1e-5}


def _problem(key, dtype, bias=True, train_output=True, activation="relu"):
    kx, kt = jax.random.split(key)
    x = jax.random.normal(kx, (N, D), dtype)
    y = jnp.sin(2.0 * x[:, 0]) + 0.1 * x[:, 1]
    net = TwoLayer(d=D, activation=activation, bias=bias, train_output=train_output)
    theta = jax.random.normal(kt, (M, net.dim), dtype)
    return net, theta, x, y


def _velocity(net, theta, x, y, tile, weights=None, fused=True):
    l2 = jnp.asarray(0.3)
    fn = jax.jit(lambda bl: weighted_velocity(net, bl, x, y, weights, l2, fused=fused, tile=tile))
    v, loss = fn(net.to_blocks(theta))
    return net.from_blocks(v), loss


def _close(got, want, rtol):
    scale = float(jnp.max(jnp.abs(want)))
    assert float(jnp.max(jnp.abs(got - want))) <= rtol * scale, (got, want)


@pytest.mark.parametrize(
    "activation,bias,train_output,dtype",
    covering(["relu", "tanh"], [True, False], [True, False], ["float64", "float32"]),
)
@pytest.mark.parametrize("tile", [7, 16, 49])  # 50 = 7*7 + 1, 3*16 + 2, 49 + 1 rows
def test_tiled_velocity_equals_unblocked(key, activation, bias, train_output, dtype, tile):
    net, theta, x, y = _problem(key, dtype, bias, train_output, activation)
    v0, loss0 = _velocity(net, theta, x, y, tile=N)
    v1, loss1 = _velocity(net, theta, x, y, tile=tile)
    rtol = RTOL[dtype]
    _close(v1, v0, rtol)
    np.testing.assert_allclose(loss1, loss0, rtol=rtol)
    # and both against the autodiff pullback, unblocked: the hand-fused form is not the
    # only witness
    v_ad, loss_ad = _velocity(net, theta, x, y, tile=N, fused=False)
    _close(v1, v_ad, 10 * rtol)
    np.testing.assert_allclose(loss1, loss_ad, rtol=10 * rtol)


def test_tiled_velocity_with_quadrature_weights(key):
    """Non-uniform weights omega (a quadrature rule) are tiled with the rows."""
    net, theta, x, y = _problem(key, "float64", activation="tanh")
    omega = jax.random.uniform(jax.random.fold_in(key, 3), (N,), jnp.float64) + 0.1
    omega = omega / jnp.sum(omega)
    v0, loss0 = _velocity(net, theta, x, y, tile=N, weights=omega)
    v1, loss1 = _velocity(net, theta, x, y, tile=9, weights=omega)
    _close(v1, v0, 1e-12)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-12)
    # the loss is (1/2) sum_i omega_i (f_i - y_i)^2, not the unweighted mean
    want = 0.5 * jnp.sum(omega * (net.predict(theta, x) - y) ** 2)
    np.testing.assert_allclose(loss1, want, rtol=1e-12)


def test_tiled_autodiff_pullback_equals_unblocked(key):
    """The tiling is the objective's, not the model's: the autodiff pullback tiles too."""
    net, theta, x, y = _problem(key, "float64", activation="tanh")
    v0, loss0 = _velocity(net, theta, x, y, tile=N, fused=False)
    v1, loss1 = _velocity(net, theta, x, y, tile=8, fused=False)
    _close(v1, v0, 1e-12)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-12)


def _loops(fn, *args) -> int:
    """Loops in the traced program (a fori_loop of static length traces to a scan)."""
    text = str(jax.make_jaxpr(fn)(*args))
    return text.count("while[") + text.count("scan[")


def test_tiles_loop_and_small_problems_do_not(key):
    """A tile smaller than n compiles a loop over tiles; tile >= n (and the automatic choice
    for a small problem) is the unblocked pass, with no loop."""
    net, theta, x, y = _problem(key, "float64")
    blocks = net.to_blocks(theta)
    l2 = jnp.asarray(0.0)

    def step(tile):
        return lambda bl: weighted_velocity(net, bl, x, y, None, l2, tile=tile)

    assert _loops(step(16), blocks) == 1
    assert _loops(step(N), blocks) == 0
    assert _loops(step(10 * N), blocks) == 0
    assert _loops(step(None), blocks) == 0  # 50 x 13 is far below the cache budget


def test_row_tile_choice():
    # small problems: one tile, the unblocked pass
    assert row_tile(1024, 1024, 4, d=16, platform="cpu") == 1024
    assert row_tile(1024, 1024, 8, d=16, platform="cpu") == 1024  # 8 MiB: two tiles' worth
    assert row_tile(2048, 2048, 4, d=16, platform="cpu") == 512  # 16 MiB: tiled
    assert row_tile(7, 10**6, 8, platform="cpu") == 7
    # large ones with few inputs: the tile's (tile, m) array fits the budget
    for n, m, size in [(16384, 8192, 4), (4096, 4096, 4), (10**5, 2048, 8)]:
        tile = row_tile(n, m, size, d=3, platform="cpu")
        assert MIN_TILE <= tile < n
        assert tile * m * size <= TILE_BYTES < 2 * tile * m * size
    # never below MIN_TILE rows (very wide networks) nor 4 (d + 1) (wide inputs)
    assert row_tile(10**5, 10**6, 8, d=3, platform="cpu") == MIN_TILE
    tile = row_tile(10**5, 8192, 8, d=100, platform="cpu")
    assert tile >= 4 * 101 and tile % 8 == 0 and tile * 8192 * 8 > TILE_BYTES
    # off the CPU: the unblocked pass
    assert row_tile(16384, 8192, 4, d=64, platform="gpu") == 16384


def test_empirical_risk_tile_field(key):
    # the risk's forward pass runs in the block layout (bias folded into the GEMM): the
    # same number as the rows-layout prediction, with and without the a and b blocks
    for bias, train_output in ((False, False), (True, False)):
        net, theta, x, y = _problem(key, "float64", bias=bias, train_output=train_output)
        want = 0.5 * jnp.mean((net.predict(theta, x) - y) ** 2)
        for tile in (N, 11):
            got = EmpiricalRisk(DataSet(x, y), tile=tile).risk(net, theta)
            np.testing.assert_allclose(got, want, rtol=1e-12)
    net, theta, x, y = _problem(key, "float64")
    data = DataSet(x, y)
    whole, tiled = EmpiricalRisk(data, l2=0.1, tile=N), EmpiricalRisk(data, l2=0.1, tile=11)
    want = 0.5 * jnp.mean((net.predict(theta, x) - y) ** 2)
    np.testing.assert_allclose(tiled.risk(net, theta), want, rtol=1e-12)
    np.testing.assert_allclose(whole.risk(net, theta), want, rtol=1e-12)
    v0, r0 = whole.velocity(net, theta)
    v1, r1 = tiled.velocity(net, theta)
    _close(v1, v0, 1e-12)
    np.testing.assert_allclose(r1, r0, rtol=1e-12)
    for bad in (0, -3, 2.5, True, "64"):
        with pytest.raises(ConfigError, match="`objective.tile`"):
            EmpiricalRisk(data, tile=bad)


def test_tiled_run_equals_unblocked_run(key):
    """simulate with tiles of 16 rows takes the same steps and records the same metrics."""
    net, theta, x, y = _problem(key, "float64", activation="tanh")
    data = DataSet(x, y)

    def run(tile):
        flow = GradientFlow(net, EmpiricalRisk(data, tile=tile), FullBatch(data))
        return mfnn.simulate(flow, Euler(), theta, dt=0.05, steps=20, key=key)

    a, b = run(N), run(16)
    _close(jnp.asarray(b.final), jnp.asarray(a.final), 1e-12)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-12)
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-12)
