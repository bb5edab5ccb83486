"""The compiled part of a simulation: chunks of steps in one `lax.scan`, records inside.

Nothing here touches the host: `mfnn.simulate` calls these functions once per chunk and
does the I/O in between. The particles are carried in the model's block layout
(`mfnn.models.AbstractModel.to_blocks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._typing import Array
from .errors import ConfigError


@eqx.filter_jit
def record(dynamics, integrator, recorder, theta, theta0, step, dt, key):
    return recorder(dynamics, integrator, theta, theta0, step, dt, key)


def all_finite(state) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state)]))


@eqx.filter_jit
def advance(
    dynamics,
    integrator,
    recorder,
    theta,
    theta0,
    start,
    dt,
    key,
    bad,
    n_rec,
    every,
    reuse,
    each_step=False,
):
    """n_rec intervals of ``every`` steps from step ``start``, recording after each.

    ``n_rec`` (the records' shape) is static; ``start``, ``every``, ``dt`` and every number
    of the dynamics are traced, so a chunk plan's segments of different spacing (the last
    interval of a run whose steps are not a multiple of ``record.every``) and runs that
    differ in those numbers share one compiled loop.

    Returns (particles, bad, records, peaks): the records are the recorder's columns
    (n_rec,) each, the peaks max |theta| at each record (n_rec,) for `mfnn.guard`.

    Between records the particles are carried in the model's block layout.
    With ``reuse`` (a deterministic full-batch dynamics) the full-batch velocity a record
    computed is the first stage of the next step, so a record costs less than a step;
    the first step of a call always computes its own, so the result depends on the chunk
    plan only (resume stays bit-identical).

    NaN/inf: the state is frozen at the last finite particles. With ``each_step`` every
    step is checked and ``bad`` is the first step whose update was non-finite (-1 if
    none). Without it (the fast path: on small problems on a GPU a per-step check costs
    as much as the step) only the end of each interval is checked; a non-finite interval
    leaves the state at its start and ``bad`` at its first step, and `simulate` re-runs
    that one interval with ``each_step`` to find the exact step.
    """
    model = dynamics.model

    def plain(state, step, k1=None, dyn=dynamics):
        return dyn.constrain(integrator.step(dyn, state, step, dt, key, k1)[0])

    def guard(new, state, bad, at):
        ok = all_finite(new) & (bad < 0)
        state = jax.tree.map(lambda u, s: jnp.where(ok, u, s), new, state)
        return state, jnp.where((bad < 0) & ~ok, at, bad)

    unroll = unroll_factor(model, theta)
    prefetch = prefetch_steps(dynamics, key, theta)

    # the steps between records run in `fori_loop`s (a counter, no scanned index array):
    # a `lax.scan` over an index array nested in the records' scan ran tiny steps about
    # 25 % slower on CPU (online SGD at d = 1000, m = 2; benchmarks/bench_online.py)

    def one_record(carry, i):
        state, bad, k1, have = carry
        base = start + i * every
        begin = state
        if reuse:  # the first step of the interval from the last record's velocity
            new = jax.lax.cond(have, lambda s: plain(s, base, k1), lambda s: plain(s, base), state)
            if each_step:
                state, bad = guard(new, state, bad, base)
            else:
                state = new
            first = 1
        else:
            first = 0
        if each_step:

            def checked(j, carry):
                return guard(plain(carry[0], base + j), carry[0], carry[1], base + j)

            state, bad = jax.lax.fori_loop(first, every, checked, (state, bad))
        else:
            state = _steps(plain, dynamics, key, state, base, first, every, unroll, prefetch)
            state, bad = guard(state, begin, bad, base)
        theta = model.from_blocks(state)
        rec, (v, loss) = recorder.measure(
            dynamics, integrator, theta, theta0, base + every, dt, key
        )
        peak = jnp.max(jnp.abs(theta))  # for the divergence guard (`mfnn.guard`)
        return (state, bad, (model.to_blocks(v), loss), jnp.asarray(True)), (rec, peak)

    state = model.to_blocks(theta)
    k1 = (jax.tree.map(jnp.zeros_like, state), jnp.zeros((), theta.dtype))
    carry = (state, bad, k1, jnp.asarray(False))
    (state, bad, _, _), (recs, peaks) = jax.lax.scan(one_record, carry, jnp.arange(n_rec))
    return model.from_blocks(state), bad, recs, peaks


UNROLL = 4  # steps per loop iteration of a tiny deterministic problem
TINY = 4096  # a two-layer network of at most this many parameters m x D is tiny
PREFETCH = 64  # the most steps whose batches are drawn at once
PREFETCH_BYTES = 1 << 20  # ... and at most this many bytes of batches


def unroll_factor(model, theta) -> int:
    """How many steps one iteration of the compiled step loop takes: `UNROLL` for a tiny
    two-layer network (m x D <= `TINY`), else 1. A tiny step costs a few microseconds of
    arithmetic, and the loop's own per-iteration cost (a host-side while loop of XLA's CPU
    runtime) is of the same order; taking several steps per iteration amortises it.
    Larger or deeper models keep one step per iteration, so their compile time does not
    grow. (A stochastic sampler's or a noisy dynamics' steps run in prefetched blocks
    instead: `prefetch_steps`.)"""
    from .models.base import AbstractUnitModel

    return UNROLL if isinstance(model, AbstractUnitModel) and theta.size <= TINY else 1


def _is_sampler(x) -> bool:
    from .objectives.sampling import AbstractSampler

    return isinstance(x, AbstractSampler)


def _stochastic_samplers(dynamics) -> list:
    leaves = jax.tree.leaves(dynamics, is_leaf=_is_sampler)
    return [x for x in leaves if _is_sampler(x) and x.stochastic]


def prefetch_steps(dynamics, key, theta) -> int:
    """How many consecutive steps take their random draws from one vectorised draw
    (`given_draws`): min(`PREFETCH`, `PREFETCH_BYTES` / the bytes one step's draws hold),
    or 0 (each step draws its own) when that is below 2 or the dynamics draws nothing a
    block can hold (full batch or exact risk, no noise). One step's draws: each stochastic
    sampler's (`mfnn.objectives.sampling.draw_bytes`: the batch, a minibatch's
    permutation) and a diffusion's noise (as many numbers as ``theta`` (m, D) holds).

    Why: a stochastic sampler draws batch k, and a diffusion its noise, from
    fold_in(key, k), and on CPU each such draw (the fold-in and the normal/permutation
    sampling) runs as small while loops of the PRNG: at online SGD with d = 1000, m = 2,
    B = 1, or a Langevin step of a few dozen particles, they cost as much as or more than
    the step's arithmetic. Drawing U steps' draws in one call pays those loops once per U
    steps (benchmarks/bench_online.py). A jump dynamics' jumps still draw step by step."""
    from .dynamics.base import diffusion_of
    from .objectives.sampling import draw_bytes

    samplers = _stochastic_samplers(dynamics)
    noisy = diffusion_of(dynamics) is not None
    if not samplers and not noisy:
        return 0
    nbytes = sum(draw_bytes(s, key) for s in samplers)
    if noisy:
        nbytes += theta.size * theta.dtype.itemsize
    u = min(PREFETCH, PREFETCH_BYTES // max(nbytes, 1))
    return u if u >= 2 else 0


def given_draws(dynamics, key, state, steps) -> tuple[list, Any]:
    """What the dynamics would draw at ``steps`` (U consecutive steps) from ``state``'s
    shapes, each kind in one vectorised call: (the batches of every stochastic sampler in
    tree order, a `mfnn.objectives.sampling.Given` with a leading axis U each
    (`mfnn.objectives.sampling.prefetch`); the diffusion's noise blocks with a leading
    axis U (`mfnn.dynamics.AbstractDiffusion.noises`), or None without noise)."""
    from .dynamics.base import diffusion_of
    from .objectives.sampling import prefetch

    batches = [prefetch(s, key, steps) for s in _stochastic_samplers(dynamics)]
    noisy = diffusion_of(dynamics)
    return batches, None if noisy is None else noisy.noises(state, steps, key)


def with_draws(dynamics, batches: list, xi=None):
    """``dynamics`` with its stochastic samplers (in tree order) replaced by ``batches``
    (`Given`, one step's batch each) and, with ``xi``, its diffusion's noise given
    (`mfnn.dynamics.AbstractDiffusion.given_noise`; inside a jump dynamics, its
    transport's)."""
    from .dynamics.base import AbstractJumps

    given = iter(batches)
    dynamics = jax.tree.map(
        lambda x: next(given) if _is_sampler(x) and x.stochastic else x,
        dynamics,
        is_leaf=_is_sampler,
    )
    if xi is None:
        return dynamics
    if isinstance(dynamics, AbstractJumps):
        return eqx.tree_at(lambda d: d.inner, dynamics, dynamics.inner.given_noise(xi))
    return dynamics.given_noise(xi)


def _steps(plain, dynamics, key, state, base, first, every, unroll: int, prefetch: int = 0):
    """Steps base + first .. base + every - 1: the same steps, in the same order and on the
    same batches, as one per loop iteration, taken

    - with ``prefetch`` = U > 0 (a stochastic sampler or noise) in blocks of U whose
      batches and noise are drawn together (`given_draws`), a scan over the block's steps
      and draws;
    - else ``unroll`` steps per loop iteration;

    and the steps left over one per iteration."""
    if prefetch:

        def one(s, step_draws):
            step, (batches, xi) = step_draws
            return plain(s, step, dyn=with_draws(dynamics, batches, xi)), None

        def block(i, s):
            steps = base + first + i * prefetch + jnp.arange(prefetch)
            draws = given_draws(dynamics, key, s, steps)
            return jax.lax.scan(one, s, (steps, draws), unroll=unroll)[0]

        blocks = (every - first) // prefetch
        state = jax.lax.fori_loop(0, blocks, block, state)
        rest = first + blocks * prefetch
        return jax.lax.fori_loop(rest, every, lambda j, s: plain(s, base + j), state)
    if unroll == 1:
        return jax.lax.fori_loop(first, every, lambda j, s: plain(s, base + j), state)

    def block_unrolled(i, s):
        j = first + i * unroll
        for k in range(unroll):
            s = plain(s, base + j + k)
        return s

    blocks = (every - first) // unroll
    state = jax.lax.fori_loop(0, blocks, block_unrolled, state)
    rest = first + blocks * unroll
    return jax.lax.fori_loop(rest, every, lambda j, s: plain(s, base + j), state)


def stack(trees: Sequence[Any], what: str = "batch member") -> Any:
    """Stack pytrees that differ only in the values of their arrays (equinox modules
    included): array leaves gain a leading batch axis, everything else is shared.

    Raises:
        ConfigError: if a tree's structure, a non-array leaf (a static field) or an
            array's shape or dtype differs from the first tree's.

    Example:
        >>> import jax.numpy as jnp
        >>> stack([(jnp.zeros(3), 1.0), (jnp.ones(3), 1.0)])[0].shape
        (2, 3)
    """
    arrays = [eqx.filter(t, eqx.is_array) for t in trees]
    static = [eqx.filter(t, eqx.is_array, inverse=True) for t in trees]
    leaves0, def0 = jax.tree.flatten(arrays[0])
    sdef0 = jax.tree.structure(static[0])
    for i, (a, s) in enumerate(zip(arrays[1:], static[1:], strict=True), start=1):
        leaves, tdef = jax.tree.flatten(a)
        same = (
            tdef == def0
            and jax.tree.structure(s) == sdef0
            and jax.tree.leaves(s) == jax.tree.leaves(static[0])
            and all(
                x.shape == y.shape and x.dtype == y.dtype
                for x, y in zip(leaves, leaves0, strict=True)
            )
        )
        if not same:
            raise ConfigError(
                f"{what} {i} differs from {what} 0 in more than its array values (structure, "
                "a static field, or an array's shape or dtype): members of a batch must "
                "share shapes; run them separately."
            )
    return eqx.combine(jax.tree.map(lambda *xs: jnp.stack(xs), *arrays), static[0])


@eqx.filter_jit
def record_batch(dynamics, integrator, recorder, theta, theta0, step, dt, key):
    def one(dyn, rec, th, th0, k):
        return rec(dyn, integrator, th, th0, step, dt, k)

    return eqx.filter_vmap(one)(dynamics, recorder, theta, theta0, key)


@eqx.filter_jit
def advance_batch(
    dynamics, integrator, recorder, theta, theta0, start, dt, key, bad, n_rec, every, reuse
):
    """`_advance` vmapped over the members (stacked dynamics, recorder, particles, keys)."""

    def one(dyn, rec, th, th0, k, b):
        return advance(dyn, integrator, rec, th, th0, start, dt, k, b, n_rec, every, reuse)

    return eqx.filter_vmap(one)(dynamics, recorder, theta, theta0, key, bad)
