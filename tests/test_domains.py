"""Bounded domains: normal reflection lands inside, is the mirror image, conserves mass.

Clouds are drawn with numpy and the domain maps run under an outer `jax.jit` (the domain
is a jit argument: its bounds are static, a ball's center a leaf), the way `simulate`
calls them; `test_jit_and_float32` checks that against the direct method call.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.domains import DOMAINS, Ball, Box, fold, make_domain
from mfnn.errors import ConfigError

D_IN = 3  # input dimension d; a particle is (a, w (d,), b), D = d + 2
DIM = D_IN + 2
M = 2000

reflect = jax.jit(lambda dom, state: dom.reflect(state))
contains = jax.jit(lambda dom, state, atol=0.0: dom.contains(state, atol))


def to_blocks(theta):
    """Rows (m, D) -> (a (m,), w^T (d, m), b (m,)), the layout of `TwoLayer.to_blocks`."""
    return theta[:, 0], theta[:, 1 : 1 + D_IN].T, theta[:, 1 + D_IN]


def from_blocks(blocks):
    a, w_t, b = (np.asarray(x) for x in blocks)
    return np.concatenate([a[None, :], w_t, b[None, :]], axis=0).T


def unit_rays(rng, m):
    e = rng.standard_normal((m, DIM))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def center_of(ball):
    return np.zeros(DIM) if ball.center is None else np.asarray(ball.center)


def ball_cloud(ball, m=M, seed=0):
    """Particles at distances uniform in [0, 5R] from the center, in random directions."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.0, 5.0 * ball.radius, (m, 1))
    return center_of(ball) + r * unit_rays(rng, m)


def box_cloud(box, m=M, seed=0):
    """Coordinates uniform in [low, high], each replaced with probability 1/4 by one
    uniform in [low - 5L, high + 5L], L = high - low: about a quarter of the particles
    inside, most of the others out in one or two coordinates only."""
    rng = np.random.default_rng(seed)
    width = box.high - box.low
    inside = rng.uniform(box.low, box.high, (m, DIM))
    wide = rng.uniform(box.low - 5.0 * width, box.high + 5.0 * width, (m, DIM))
    return np.where(rng.uniform(size=(m, DIM)) < 0.25, wide, inside)


BALLS = {
    "ball": Ball(radius=1.5),
    "ball_centered": Ball(radius=0.7, center=jnp.array([0.5, -1.0, 0.25, 2.0, -0.3])),
}
BOXES = {"box": Box(low=-1.0, high=2.0)}
CASES = [(dom, ball_cloud) for dom in BALLS.values()] + [(dom, box_cloud) for dom in BOXES.values()]
IDS = [*BALLS, *BOXES]


@pytest.mark.parametrize(("dom", "cloud"), CASES, ids=IDS)
def test_reflect_lands_inside_in_both_layouts(dom, cloud):
    theta = cloud(dom)
    assert 0.5 < np.mean(~np.asarray(contains(dom, theta))) < 0.99  # most start far outside
    rows = reflect(dom, theta)
    blocks = reflect(dom, to_blocks(theta))
    assert isinstance(blocks, tuple) and len(blocks) == 3
    assert np.all(contains(dom, rows)) and np.all(contains(dom, blocks))
    # the norm of a particle runs over all its blocks: both layouts are the same map
    np.testing.assert_allclose(from_blocks(blocks), rows, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(contains(dom, to_blocks(theta)), contains(dom, theta))


@pytest.mark.parametrize(("dom", "cloud"), CASES, ids=IDS)
@pytest.mark.parametrize("layout", ["rows", "blocks"])
def test_mass_conserved_and_inside_untouched(dom, cloud, layout):
    theta = cloud(dom)
    state = theta if layout == "rows" else to_blocks(theta)
    out = reflect(dom, state)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(state)
    leaves = zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(out), strict=True)
    for x, y in leaves:
        assert y.shape == x.shape and y.dtype == x.dtype and np.all(np.isfinite(y))
    out_rows = np.asarray(out) if layout == "rows" else from_blocks(out)
    inside = np.asarray(contains(dom, theta))
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(out_rows[inside], theta[inside])  # bit for bit
    moved = np.any(out_rows != theta, axis=1)
    np.testing.assert_array_equal(moved, ~inside)  # and only the outside ones move


@pytest.mark.parametrize("dom", BALLS.values(), ids=list(BALLS))
def test_ball_reflection_is_the_mirror_image(dom):
    rng = np.random.default_rng(1)
    radius, c = dom.radius, center_of(dom)
    e = unit_rays(rng, 500)
    eps = rng.uniform(1e-3 * radius, 0.999 * radius, (500, 1))
    cases = [
        (radius + eps, radius - eps),  # mirror in the sphere, along the same ray
        (2 * radius + eps, -eps),  # past the center: on the opposite ray
        (3 * radius + eps, -(radius - eps)),  # bounced off the far side too
        (4 * radius + eps, eps),  # period 4R along the diameter
    ]
    for r, s in cases:
        np.testing.assert_allclose(reflect(dom, jnp.asarray(c + r * e)), c + s * e, atol=1e-12)


def test_box_reflection_is_the_mirror_image():
    box = Box(low=-1.0, high=2.0)
    width = box.high - box.low
    eps = np.linspace(1e-3, 0.999 * width, 101)[:, None] * np.ones((1, DIM))
    cases = [
        (box.high + eps, box.high - eps),
        (box.low - eps, box.low + eps),
        (box.high + width + eps, box.low + eps),  # up to high, back across, past low
        (box.low - width - eps, box.high - eps),
        (box.high + 2 * width + eps, box.high - eps),  # period 2L
    ]
    for x, expected in cases:
        np.testing.assert_allclose(reflect(box, jnp.asarray(x)), expected, atol=1e-12)
    # the coordinates of one particle are reflected independently
    x = jnp.array([[2.5, -1.25, 0.0, 5.5, 2.0]])
    np.testing.assert_allclose(reflect(box, x), [[1.5, -0.75, 0.0, -0.5, 2.0]], atol=1e-15)


def test_ball_and_box_agree_in_one_dimension():
    x = jnp.asarray(np.random.default_rng(2).uniform(-9.0, 9.0, (1000, 1)))
    box = Box(low=-1.0, high=1.0)
    np.testing.assert_allclose(reflect(Ball(radius=1.0), x), reflect(box, x), atol=1e-13)
    np.testing.assert_allclose(jax.jit(fold, static_argnums=(1, 2))(x, -1.0, 1.0), reflect(box, x))


@pytest.mark.parametrize(("dom", "cloud"), CASES, ids=IDS)
def test_identity_inside_and_idempotent(dom, cloud):
    theta = cloud(dom)
    once = reflect(dom, theta)
    np.testing.assert_array_equal(reflect(dom, once), once)
    # the outside particles replaced by inside ones (the center, a corner): same shapes
    anchor = center_of(dom) if isinstance(dom, Ball) else np.full(DIM, dom.high)
    inner = np.where(np.asarray(contains(dom, theta))[:, None], theta, anchor)
    np.testing.assert_array_equal(reflect(dom, inner), inner)
    blocks = reflect(dom, to_blocks(theta))
    for x, y in zip(reflect(dom, blocks), blocks, strict=True):
        np.testing.assert_array_equal(x, y)


def test_boundary_points_are_inside_and_fixed():
    ball = Ball(radius=2.0)
    x = jnp.array([[2.0, 0.0], [0.0, -2.0], [0.0, 0.0]])
    assert np.all(contains(ball, x))
    np.testing.assert_array_equal(reflect(ball, x), x)
    box = Box(low=-1.0, high=1.0)
    y = jnp.array([[1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(reflect(box, y), y)


def test_ball_jacobian_at_the_sphere_reflects_velocities():
    """Just outside, d(reflect) = I - 2 n n^T: the normal velocity flips, tangential stays."""
    ball = Ball(radius=1.3, center=jnp.arange(DIM, dtype=jnp.float64))
    n = unit_rays(np.random.default_rng(3), 1)[0]
    x = ball.center + ball.radius * (1.0 + 1e-9) * n
    one = lambda p: ball.reflect(p[None, :])[0]  # noqa: E731
    jac = jax.jit(jax.jacobian(one))(x)
    np.testing.assert_allclose(jac, np.eye(DIM) - 2.0 * np.outer(n, n), atol=1e-8)
    # and the gradient is finite everywhere, the center included
    grad = jax.jit(jax.grad(lambda p: jnp.sum(one(p) ** 2)))(ball.center)
    assert np.all(np.isfinite(grad))


def triangle_wave(y, lo, hi):
    """Exact position of a billiard ball in [lo, hi] whose unfolded position is y."""
    length = hi - lo
    u = np.mod(y - lo, 2 * length)
    return lo + np.where(u <= length, u, 2 * length - u)


@pytest.mark.parametrize("dom", [Box(low=-1.0, high=1.0), Ball(radius=1.0)], ids=["box", "ball"])
def test_billiard_in_one_dimension(dom):
    """x' = v in [-1, 1] with Euler steps + reflect; the velocity is reflected with the
    same map (its Jacobian, ``jax.jvp``). The exact path is the triangle wave of x0 + v0 t."""
    x0, v0, dt, steps = 0.3, 0.7, 0.01, 1000

    def step(carry, _):
        x, v = carry
        x, v = jax.jvp(dom.reflect, (x + dt * v,), (v,))
        return (x, v), x[0, 0]

    (x_end, v_end), path = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(
        (jnp.full((1, 1), x0), jnp.full((1, 1), v0))
    )
    t = dt * np.arange(1, steps + 1)
    np.testing.assert_allclose(path, triangle_wave(x0 + v0 * t, -1.0, 1.0), atol=1e-10)
    # T = 10: unfolded 7.3 = 2 periods (8) - 0.7, moving right after the last bounce off -1
    np.testing.assert_allclose(x_end, [[-0.7]], atol=1e-10)
    np.testing.assert_allclose(v_end, [[0.7]], atol=1e-12)
    assert path.max() > 0.99 and path.min() < -0.99  # it did hit both walls
    # unfolded 0.3 -> 7.3 crosses 1, 3, 5, 7: four bounces (at 1, -1, 1, -1)
    assert int(np.sum(np.diff(np.sign(np.diff(path))) != 0)) == 4


@pytest.mark.parametrize(("dom", "cloud"), CASES, ids=IDS)
def test_jit_and_float32(dom, cloud):
    theta = cloud(dom)
    direct = dom.reflect(theta)
    # direct call (its own filter_jit) and nested in a jit: the same map up to rounding
    # (XLA may fuse differently), the inside points bit for bit
    np.testing.assert_allclose(reflect(dom, theta), direct, rtol=1e-13, atol=1e-15)
    inside = np.asarray(dom.contains(theta))
    np.testing.assert_array_equal(np.asarray(direct)[inside], theta[inside])
    theta32 = theta.astype(np.float32)
    for state in (theta32, to_blocks(theta32)):
        out = reflect(dom, state)
        assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(out))
        assert np.all(contains(dom, out, 1e-5))
    np.testing.assert_allclose(reflect(dom, theta32), direct, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Ball(radius=0.0), "`dynamics.domain.radius`"),
        (lambda: Ball(radius=-1.0), "`dynamics.domain.radius`"),
        (lambda: Ball(radius=float("nan")), "`dynamics.domain.radius`"),
        (lambda: Ball(radius="1"), "`dynamics.domain.radius`"),
        (lambda: Ball(radius=True), "`dynamics.domain.radius`"),
        (lambda: Ball(radius=1.0, center=np.zeros((2, 2))), "`dynamics.domain.center`"),
        (lambda: Box(low=1.0, high=1.0), "`dynamics.domain.low`"),
        (lambda: Box(low=2.0, high=-1.0), "`dynamics.domain.high`"),
        (lambda: Box(low=float("-inf"), high=1.0), "`dynamics.domain.low`"),
        (lambda: Box(low=0.0, high=None), "`dynamics.domain.high`"),
        (lambda: make_domain("sphere", radius=1.0), "`dynamics.domain.kind`"),
        (lambda: make_domain("ball", radius=1.0, centre=[0.0]), "`dynamics.domain.centre`"),
        (lambda: make_domain("ball"), "`dynamics.domain.radius`"),
        (lambda: make_domain("box", low=0.0), "`dynamics.domain.high`"),
    ],
)
def test_bad_config_raises(build, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build()


def test_error_messages_help():
    with pytest.raises(ConfigError, match="got -2.0"):
        Ball(radius=-2.0)
    with pytest.raises(ConfigError, match=r"\['ball', 'box'\].*Did you mean `ball`"):
        make_domain("bal", radius=1.0)
    with pytest.raises(ConfigError, match="Did you mean `center`"):
        make_domain("ball", radius=1.0, centre=[0.0])
    # a center of the wrong length is caught when the state's dimension is known
    with pytest.raises(ConfigError, match=r"`dynamics\.domain\.center`.*D = 5.*got 3"):
        Ball(radius=1.0, center=[0.0, 0.0, 0.0]).contains(jnp.zeros((4, DIM)))


def test_make_domain_builds_the_registered_classes():
    assert set(DOMAINS) == {"ball", "box"}
    ball = make_domain("ball", radius=2, center=[0.0, 1.0])
    # the radius is a traced, weakly typed scalar (a float32 run stays float32)
    assert isinstance(ball, Ball) and float(ball.radius) == 2.0 and ball.radius.weak_type
    np.testing.assert_array_equal(ball.center, [0.0, 1.0])
    box = make_domain("box", low=-1, high=1)
    assert isinstance(box, Box) and (float(box.low), float(box.high)) == (-1.0, 1.0)
