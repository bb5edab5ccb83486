"""Passive tracers in the field of a reference measure (THEORY.md section 7).

The synchronous coupling of propagation of chaos compares m particles moved by their own
empirical field with the SAME initial points moved by the field of the limit measure
mu(t). A reference cloud of M >> m particles, itself run with the ordinary gradient flow,
stands in for mu(t); the tracers are moved by its field and do not act on it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Float, Key, Particles, Scalar
from ..errors import ConfigError
from ..objectives.risk import freeze


class _ObjectiveView(eqx.Module):
    """An objective seen through part of a stacked state: the data set and L2 weight are
    the wrapped objective's; subclasses say which rows count (`_rows`)."""

    objective: eqx.Module

    @property
    def data(self):
        """The objective's data set (None for a population risk)."""
        return getattr(self.objective, "data", None)

    @property
    def l2(self) -> float:
        return getattr(self.objective, "l2", 0.0)

    def _rows(self, theta: Particles) -> Particles:
        raise NotImplementedError

    def risk(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """R of the measure on the rows that count, on the given batch if any."""
        return self.objective.risk(model, self._rows(theta), x, y)

    def penalty(self, theta: Particles) -> Scalar:
        """(lambda/2) times the mean of |theta_i|^2 over the rows that count."""
        return self.objective.penalty(self._rows(theta))

    def energy(self, model, theta: Particles, x=None, y=None) -> Scalar:
        return self.objective.energy(model, self._rows(theta), x, y)


class ReferencePart(_ObjectiveView):
    r"""An objective seen through the reference rows of a `Tracers` state.

    The state is (M reference rows, then k tracer rows); the risk, the L2 penalty and
    the energy are those of the reference measure mu^M = (1/M) sum_{i <= M} delta_theta_i
    alone (the tracers carry no mass). `Recorder` reads ``dynamics.objective`` through
    this view, so the recorded loss, energy and test loss are the reference's.

    Args:
        objective: the objective of the reference flow (`EmpiricalRisk`, `PopulationRisk`).
        n_tracers: k, the number of trailing tracer rows.
    """

    n_tracers: int = eqx.field(static=True)

    def reference(self, theta: Particles) -> Particles:
        """The first M = N - k rows of an (N, D) state."""
        return theta[: theta.shape[0] - self.n_tracers]

    _rows = reference

    def first_variation(self, model, theta: Particles, points: Particles) -> Float[Array, " k"]:
        """Phi[mu^M](theta') at each row of ``points``."""
        return self.objective.first_variation(model, self.reference(theta), points)


class Tracers(eqx.Module):
    r"""A reference flow of M particles plus k passive tracers moved by its field.

    The state is an (M + k, D) array: the M reference rows theta^M_i, then the k tracer
    rows theta~_j. The reference rows move by the wrapped flow's own velocity (the
    ordinary M-particle gradient flow); each tracer moves by the velocity field of the
    reference measure mu^M_t = (1/M) sum_i delta_{theta^M_i(t)}:

        d theta~_j/dt = v[mu^M_t](theta~_j) = -grad_theta Phi[mu^M_t](theta~_j),

    Phi = dE/dmu in mean_field (the rescaled first variation of `EmpiricalRisk` for a
    general scaling gamma, so that a tracer placed on a reference particle has that
    particle's velocity in every scaling). The tracers do not act on the reference: the
    reference rows evolve exactly as the plain M-particle flow. With M large, mu^M_t
    stands in for the mean-field limit mu(t), and the tracers started at the initial
    points of an m-particle system realize the synchronous coupling of THEORY.md
    section 7 (the McKean-Vlasov particles of seed 001, Theorem 2.3).

    `simulate` steps it like any dynamics (in the model's block layout when the flow has
    one); `Recorder` reads the reference part: ``loss``, ``energy``, ``dissipation``
    and the energy identity are those of mu^M (``movement`` is over all rows).

    Args:
        flow: a deterministic dynamics (`GradientFlow` with a `FullBatch` or `Exact`
            sampler, optionally a bounded domain, whose reflection also acts on the
            tracers).
        n_tracers: k >= 0, the number of trailing tracer rows.

    Note:
        Construction fails for a stochastic sampler (minibatch or online SGD), a noisy
        (`Langevin`) or jumping (`BirthDeath`) dynamics: the coupling is defined for the
        deterministic flow. The tracer velocity costs one more forward pass of the
        reference (the residual of the first variation) and O(n k D) for the tracers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, TwoLayer
        >>> from mfnn import simulate
        >>> x = jnp.linspace(-1.0, 1.0, 8)[:, None]
        >>> data = DataSet(x, jnp.sin(3.0 * x[:, 0]))
        >>> net = TwoLayer(d=1, activation="tanh", scaling="mean_field")
        >>> flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        >>> ref = jax.random.normal(jax.random.key(0), (64, 3))
        >>> tracers = ref[:2]  # two tracers started on reference particles
        >>> dyn = Tracers(flow, n_tracers=2)
        >>> state = jnp.concatenate([ref, tracers])
        >>> traj = simulate(dyn, Euler(), state, dt=0.1, steps=20, key=jax.random.key(1))
        >>> final = traj.final
        >>> bool(jnp.allclose(final[64:], final[:2], rtol=1e-12, atol=1e-14))
        True

    References:
        Sznitman (1991), Topics in propagation of chaos; Chizat and Bach (2018), Thm 2.6
        (seed 001, Theorem 2.3); THEORY.md section 7.
    """

    flow: eqx.Module
    n_tracers: int = eqx.field(static=True)

    has_noise = False
    stochastic = False

    def __check_init__(self):
        k = self.n_tracers
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"`n_tracers` must be an integer >= 0; got {k!r}.")
        if getattr(self.flow, "has_noise", False) or hasattr(self.flow, "jump"):
            raise ConfigError(
                f"Tracers needs a deterministic flow; got {type(self.flow).__name__} (noise or "
                "jumps). Wrap the plain `GradientFlow`."
            )
        if getattr(self.flow, "stochastic", False):
            raise ConfigError(
                "Tracers needs a deterministic sampler (`FullBatch` or `Exact`): with "
                "minibatches or fresh samples the coupling is not defined; got "
                f"{type(self.flow.sampler).__name__}."
            )
        for attr in ("model", "objective", "sampler"):
            if not hasattr(self.flow, attr):
                raise ConfigError(f"Tracers needs a flow with `{attr}`; got {self.flow!r}.")

    # ------------------------------------------------------------------ parts
    @property
    def model(self):
        return self.flow.model

    @property
    def sampler(self):
        return self.flow.sampler

    @property
    def objective(self) -> ReferencePart:
        """The flow's objective restricted to the reference rows (see `ReferencePart`)."""
        return ReferencePart(self.flow.objective, self.n_tracers)

    def split(self, theta: Particles) -> tuple[Particles, Particles]:
        """(reference (M, D), tracers (k, D)) from the (M + k, D) state."""
        n_ref = theta.shape[0] - self.n_tracers
        if n_ref < 1:
            raise ConfigError(
                f"a Tracers state needs at least one reference row before its "
                f"{self.n_tracers} tracers; got {theta.shape[0]} rows."
            )
        return theta[:n_ref], theta[n_ref:]

    def exact(self) -> Tracers:
        """The same tracers on the flow's exact objective (what records measure)."""
        fn = getattr(self.flow, "exact", None)
        return self if fn is None else Tracers(fn(), self.n_tracers)

    def constrain(self, state):
        """The flow's domain reflection, row by row (reference and tracers alike)."""
        fn = getattr(self.flow, "constrain", None)
        return state if fn is None else fn(state)

    # ------------------------------------------------------------- velocities
    def tracer_velocity(
        self, reference: Particles, points: Particles, x=None, y=None
    ) -> Float[Array, "k D"]:
        """v[mu^M](theta~) = -grad_theta Phi[mu^M](theta~) at each row of ``points``.

        Autodiff of the objective's first variation with mu^M held fixed (Phi at
        different points is independent, so the gradient of their sum is the field at
        each point); frozen blocks get zero velocity. ``x, y``: the step's batch (None:
        the objective's own exact risk).
        """
        obj, model = self.flow.objective, self.model
        if points.shape[0] == 0:
            return points

        def total(p):
            if x is None:
                return jnp.sum(obj.first_variation(model, reference, p))
            return jnp.sum(obj.first_variation(model, reference, p, x, y))

        return freeze(model, -jax.grad(total)(points))

    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """(v (M + k, D), the reference's risk on the step's batch)."""
        ref, tr = self.split(theta)
        v_ref, loss = self.flow.velocity(ref, step, key)
        x, y = self.sampler(key, step)
        v_tr = self.tracer_velocity(ref, tr, x, y)
        return jnp.concatenate([v_ref, v_tr.astype(v_ref.dtype)]), loss

    def velocity_blocks(self, blocks, step, key: Key):
        """`velocity` in the model's block layout (particles along the last axis of each
        block), the layout `simulate` steps in: the reference blocks go through the
        flow's own ``velocity_blocks``, so the reference part is the plain flow's step."""
        model = self.model
        n_ref = blocks[0].shape[-1] - self.n_tracers
        ref = tuple(b[..., :n_ref] for b in blocks)
        tr = tuple(b[..., n_ref:] for b in blocks)
        if hasattr(self.flow, "velocity_blocks"):
            v_ref, loss = self.flow.velocity_blocks(ref, step, key)
        else:
            v, loss = self.flow.velocity(model.from_blocks(ref), step, key)
            v_ref = model.to_blocks(v)
        x, y = self.sampler(key, step)
        v_tr = model.to_blocks(
            self.tracer_velocity(model.from_blocks(ref), model.from_blocks(tr), x, y)
        )
        v = tuple(jnp.concatenate([a, b], axis=-1) for a, b in zip(v_ref, v_tr, strict=True))
        return v, loss

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        """`velocity` on the exact objective (full data set, closed form)."""
        ref, tr = self.split(theta)
        v_ref, loss = self.flow.full_velocity(ref)
        v_tr = self.tracer_velocity(ref, tr)
        return jnp.concatenate([v_ref, v_tr.astype(v_ref.dtype)]), loss

    def energy(self, theta: Particles) -> Scalar:
        """E(mu^M): the energy of the reference part (the tracers carry no mass)."""
        return self.flow.energy(self.split(theta)[0])

    def dissipation(self, v: Particles) -> Scalar:
        """-dE/dt of the reference part: the flow's dissipation of its M velocities."""
        return self.flow.dissipation(v[: v.shape[0] - self.n_tracers])


class ReplicaMean(_ObjectiveView):
    r"""An objective averaged over the replicas of a `Replicas` state.

    The state stacks R independent m-particle systems; the risk, penalty and energy are
    the means over r of those of mu_r = (1/m) sum_{j in replica r} delta_theta_j. `Recorder`
    reads ``dynamics.objective`` through this view.

    Args:
        objective: the objective of one system.
        n_replicas: R.
    """

    n_replicas: int = eqx.field(static=True)

    def _each(self, theta: Particles) -> Float[Array, "R m D"]:
        return theta.reshape(self.n_replicas, -1, theta.shape[-1])

    def risk(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """(1/R) sum_r R(mu_r), on the given batch if any."""
        return jnp.mean(jax.vmap(lambda t: self.objective.risk(model, t, x, y))(self._each(theta)))

    def penalty(self, theta: Particles) -> Scalar:
        """(1/R) sum_r (lambda/2) int |theta|^2 dmu_r (the mean over all rows)."""
        return jnp.mean(jax.vmap(self.objective.penalty)(self._each(theta)))

    def energy(self, model, theta: Particles, x=None, y=None) -> Scalar:
        return self.risk(model, theta, x, y) + self.penalty(theta)


class Replicas(eqx.Module):
    r"""R independent copies of an m-particle flow, stepped as one state.

    The state is an (R m, D) array; rows r m .. (r + 1) m - 1 are replica r, a system of
    m particles that moves by its own empirical field,

        d theta_{r,j}/dt = v[mu_r](theta_{r,j}),   mu_r = (1/m) sum_j delta_{theta_{r,j}},

    and does not feel the other replicas. The velocity is the flow's, vmapped over the
    replica axis (one compiled step for R seeds). `Recorder` reads the means over the
    replicas: ``loss``, ``energy`` and ``dissipation`` (so the energy identity holds for
    the mean).

    Args:
        flow: the dynamics of one system (e.g. `GradientFlow`; not noisy, no jumps).
        n_replicas: R >= 1; the row count of the state must be a multiple of R.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import DataSet, EmpiricalRisk, FullBatch, GradientFlow, TwoLayer
        >>> x = jnp.linspace(-1.0, 1.0, 8)[:, None]
        >>> data = DataSet(x, jnp.sin(3.0 * x[:, 0]))
        >>> net = TwoLayer(d=1, activation="tanh", scaling="mean_field")
        >>> flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        >>> theta = jax.random.normal(jax.random.key(0), (3 * 5, 3))  # R = 3, m = 5
        >>> v, loss = Replicas(flow, 3).velocity(theta, 0, jax.random.key(1))
        >>> v1, _ = flow.velocity(theta[5:10], 0, jax.random.key(1))
        >>> v.shape, bool(jnp.allclose(v[5:10], v1, rtol=1e-12, atol=1e-14))
        ((15, 3), True)

    References:
        THEORY.md section 7 (the m-particle side of the synchronous coupling).
    """

    flow: eqx.Module
    n_replicas: int = eqx.field(static=True)

    has_noise = False

    def __check_init__(self):
        r = self.n_replicas
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ConfigError(f"`n_replicas` must be a positive integer; got {r!r}.")
        if getattr(self.flow, "has_noise", False) or hasattr(self.flow, "jump"):
            raise ConfigError(
                f"Replicas needs a flow without noise or jumps; got {type(self.flow).__name__}."
            )

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.flow, "stochastic", False))

    @property
    def model(self):
        return self.flow.model

    @property
    def sampler(self):
        return self.flow.sampler

    @property
    def objective(self) -> ReplicaMean:
        """The flow's objective averaged over the replicas (see `ReplicaMean`)."""
        return ReplicaMean(self.flow.objective, self.n_replicas)

    def each(self, theta: Particles) -> Float[Array, "R m D"]:
        """(R m, D) rows -> (R, m, D)."""
        rows, dim = theta.shape
        if rows % self.n_replicas:
            raise ConfigError(
                f"a Replicas state needs a multiple of n_replicas = {self.n_replicas} rows; "
                f"got {rows}."
            )
        return theta.reshape(self.n_replicas, rows // self.n_replicas, dim)

    def exact(self) -> Replicas:
        fn = getattr(self.flow, "exact", None)
        return self if fn is None else Replicas(fn(), self.n_replicas)

    def constrain(self, state):
        fn = getattr(self.flow, "constrain", None)
        return state if fn is None else fn(state)

    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """(v (R m, D), the mean over the replicas of their batch risks)."""
        v, loss = jax.vmap(lambda t: self.flow.velocity(t, step, key))(self.each(theta))
        return v.reshape(theta.shape), jnp.mean(loss)

    def velocity_blocks(self, blocks, step, key: Key):
        """`velocity` in the model's block layout (particles along the last axis)."""
        r = self.n_replicas

        def split(b):  # (..., R m) -> (R, ..., m)
            return jnp.moveaxis(b.reshape(*b.shape[:-1], r, b.shape[-1] // r), -2, 0)

        def join(b):  # (R, ..., m) -> (..., R m)
            b = jnp.moveaxis(b, 0, -2)
            return b.reshape(*b.shape[:-2], b.shape[-2] * b.shape[-1])

        each = tuple(split(b) for b in blocks)
        if hasattr(self.flow, "velocity_blocks"):
            v, loss = jax.vmap(lambda bl: self.flow.velocity_blocks(bl, step, key))(each)
            return tuple(join(b) for b in v), jnp.mean(loss)
        model = self.model
        v, loss = jax.vmap(lambda bl: self.flow.velocity(model.from_blocks(bl), step, key))(each)
        return model.to_blocks(v.reshape(-1, v.shape[-1])), jnp.mean(loss)

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        v, loss = jax.vmap(self.flow.full_velocity)(self.each(theta))
        return v.reshape(theta.shape), jnp.mean(loss)

    def energy(self, theta: Particles) -> Scalar:
        """(1/R) sum_r E(mu_r)."""
        return jnp.mean(jax.vmap(self.flow.energy)(self.each(theta)))

    def dissipation(self, v: Particles) -> Scalar:
        """(1/R) sum_r of the flow's dissipation of replica r's velocities."""
        return jnp.mean(jax.vmap(self.flow.dissipation)(self.each(v)))


class Leading(_ObjectiveView):
    """An objective seen through the first ``rows`` rows of a `Stack` state (its first
    part), e.g. ``Leading(Tracers(...).objective, M + k)``."""

    rows: int = eqx.field(static=True)

    def _rows(self, theta: Particles) -> Particles:
        return theta[: self.rows]


class Stack(eqx.Module):
    r"""Independent deterministic dynamics stepped together on consecutive row blocks.

    The state is the concatenation of the parts' states: rows 0 .. N_1 - 1 belong to
    ``parts[0]``, the next N_2 rows to ``parts[1]``, and so on (``sizes`` = (N_1, N_2,
    ...)); each part moves by its own velocity and none feels another. One compiled loop
    (one `simulate` call, the same dt and steps) then serves, e.g., a `Tracers` reference
    and the `Replicas` of every width of a coupling study. `Recorder` reads the first
    part: ``loss``, ``energy``, ``dissipation`` and the energy identity are those of
    ``parts[0]`` (``movement`` is over all rows).

    Args:
        parts: dynamics sharing one model (`GradientFlow`, `Tracers`, `Replicas`); each
            deterministic (no noise, jumps or stochastic sampler).
        sizes: the row count of each part.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import DataSet, EmpiricalRisk, FullBatch, GradientFlow, TwoLayer
        >>> x = jnp.linspace(-1.0, 1.0, 8)[:, None]
        >>> data = DataSet(x, jnp.sin(3.0 * x[:, 0]))
        >>> net = TwoLayer(d=1, activation="tanh", scaling="mean_field")
        >>> flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        >>> theta = jax.random.normal(jax.random.key(0), (10, 3))
        >>> v, _ = Stack((flow, flow), (4, 6)).velocity(theta, 0, jax.random.key(1))
        >>> v6, _ = flow.velocity(theta[4:], 0, jax.random.key(1))
        >>> bool(jnp.allclose(v[4:], v6, rtol=1e-12, atol=1e-14))
        True
    """

    parts: tuple
    sizes: tuple[int, ...] = eqx.field(static=True)

    has_noise = False
    stochastic = False

    def __check_init__(self):
        parts, sizes = tuple(self.parts), tuple(self.sizes)
        if not parts or len(parts) != len(sizes):
            raise ConfigError(
                f"Stack needs one size per part; got {len(parts)} parts and sizes {sizes!r}."
            )
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ConfigError(f"Stack sizes must be positive integers; got {sizes!r}.")
        for p in parts:
            if (
                getattr(p, "has_noise", False)
                or hasattr(p, "jump")
                or getattr(p, "stochastic", False)
            ):
                raise ConfigError(
                    f"Stack parts must be deterministic (no noise, jumps or minibatches); got "
                    f"{type(p).__name__}."
                )
            if p.model != parts[0].model:
                raise ConfigError(
                    "Stack parts must share one model (one particle layout); got "
                    f"{p.model!r} and {parts[0].model!r}."
                )

    @property
    def model(self):
        return self.parts[0].model

    @property
    def sampler(self):
        return self.parts[0].sampler

    @property
    def objective(self) -> Leading:
        """The first part's objective on its rows (what `Recorder` measures)."""
        return Leading(self.parts[0].objective, self.sizes[0])

    def slices(self) -> list[slice]:
        """The row range of each part."""
        out, start = [], 0
        for s in self.sizes:
            out.append(slice(start, start + s))
            start += s
        return out

    def _check_rows(self, rows: int) -> None:
        if rows != sum(self.sizes):
            raise ConfigError(
                f"a Stack state must have sum(sizes) = {sum(self.sizes)} rows; got {rows}."
            )

    def exact(self) -> Stack:
        parts = tuple(p.exact() if hasattr(p, "exact") else p for p in self.parts)
        return Stack(parts, self.sizes)

    def constrain(self, state):
        """Each part's own constraint (domain reflection) on its rows or block columns."""
        if all(_domain(p) is None for p in self.parts):
            return state  # nothing to reflect: no copies
        rows = not isinstance(state, tuple)
        out = []
        for p, sl in zip(self.parts, self.slices(), strict=True):
            piece = state[sl] if rows else tuple(b[..., sl] for b in state)
            out.append(piece if _domain(p) is None else p.constrain(piece))
        if rows:
            return jnp.concatenate(out)
        return tuple(jnp.concatenate(c, axis=-1) for c in zip(*out, strict=True))

    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """(v (N, D), the first part's batch risk)."""
        self._check_rows(theta.shape[0])
        pairs = zip(self.parts, self.slices(), strict=True)
        out = [p.velocity(theta[sl], step, key) for p, sl in pairs]
        return jnp.concatenate([v for v, _ in out]), out[0][1]

    def velocity_blocks(self, blocks, step, key: Key):
        """`velocity` in the model's block layout (particles along the last axis)."""
        self._check_rows(blocks[0].shape[-1])
        model = self.model
        out = []
        for p, sl in zip(self.parts, self.slices(), strict=True):
            piece = tuple(b[..., sl] for b in blocks)
            if hasattr(p, "velocity_blocks"):
                out.append(p.velocity_blocks(piece, step, key))
            else:
                v, loss = p.velocity(model.from_blocks(piece), step, key)
                out.append((model.to_blocks(v), loss))
        v = tuple(jnp.concatenate(c, axis=-1) for c in zip(*[v for v, _ in out], strict=True))
        return v, out[0][1]

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        self._check_rows(theta.shape[0])
        pairs = zip(self.parts, self.slices(), strict=True)
        out = [p.full_velocity(theta[sl]) for p, sl in pairs]
        return jnp.concatenate([v for v, _ in out]), out[0][1]

    def energy(self, theta: Particles) -> Scalar:
        """The first part's energy."""
        return self.parts[0].energy(theta[: self.sizes[0]])

    def dissipation(self, v: Particles) -> Scalar:
        """The first part's dissipation."""
        return self.parts[0].dissipation(v[: self.sizes[0]])


def _domain(dynamics):
    """The bounded domain under a (possibly wrapped) dynamics, or None."""
    while hasattr(dynamics, "flow"):
        dynamics = dynamics.flow
    return getattr(dynamics, "domain", None)
