"""Passive tracers in the field of a reference measure, independent replicas, and stacks.

The synchronous coupling of propagation of chaos compares m particles moved by their own
empirical field with the SAME initial points moved by the field of the limit measure
mu(t). A reference cloud of M >> m particles, itself run with the ordinary gradient flow,
stands in for mu(t); the tracers are moved by its field and do not act on it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Float, Inputs, Key, Particles, Scalar, Targets
from ..errors import ConfigError
from ..models.base import AbstractModel, Blocks
from .base import AbstractDiffusion, AbstractDynamics, AbstractJumps
from .gradient_flow import GradientFlow


class Tracers(AbstractDynamics):
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
    points of an m-particle system realize the synchronous coupling of propagation of
    chaos (the McKean-Vlasov particles of H. Yang's overview "Mean-field analysis of neural
    networks", Theorem 2.3).

    `simulate` steps it like any dynamics (in the model's block layout); `Recorder`
    reads the reference part: ``loss``, ``energy``, ``dissipation``
    and the energy identity are those of mu^M (``movement`` is over all rows).

    Args:
        flow: the exact `GradientFlow` (an `Exact` sampler, or `FullBatch` on its
            objective's data), optionally with a bounded domain, whose reflection also
            acts on the tracers.
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
        (H. Yang, "Mean-field analysis of neural networks: an overview", Theorem 2.3).
    """

    flow: GradientFlow
    n_tracers: int = eqx.field(static=True)

    def __check_init__(self):
        k = self.n_tracers
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"`n_tracers` must be an integer >= 0; got {k!r}.")
        if not isinstance(self.flow, GradientFlow):
            raise ConfigError(
                f"Tracers needs a deterministic flow (a plain `GradientFlow`); got "
                f"{type(self.flow).__name__} (noise or jumps). Wrap the plain `GradientFlow`."
            )
        if not self.flow.exact_steps:
            raise ConfigError(
                "Tracers needs the exact flow (an `Exact` sampler, or `FullBatch` on the "
                "objective's own data): with minibatches or fresh samples the coupling is not "
                f"defined; got {type(self.flow.sampler).__name__}."
            )

    # ------------------------------------------------------------------ parts
    @property
    def model(self) -> AbstractModel:
        return self.flow.model

    @property
    def bounded(self) -> bool:
        return self.flow.bounded

    stochastic = False

    @property
    def exact_steps(self) -> bool:
        return self.flow.exact_steps

    def _n_ref(self, rows: int) -> int:
        if rows - self.n_tracers < 1:
            raise ConfigError(
                f"a Tracers state needs at least one reference row before its "
                f"{self.n_tracers} tracers; got {rows} rows."
            )
        return rows - self.n_tracers

    def split(self, theta: Particles) -> tuple[Particles, Particles]:
        """(reference (M, D), tracers (k, D)) from the (M + k, D) state."""
        n_ref = self._n_ref(theta.shape[0])
        return theta[:n_ref], theta[n_ref:]

    def exact(self) -> Tracers:
        """The same tracers on the flow's exact objective (what records measure)."""
        return Tracers(self.flow.exact(), self.n_tracers)

    def constrain(self, state: Blocks) -> Blocks:
        """The flow's domain reflection, particle by particle (reference and tracers)."""
        return self.flow.constrain(state)

    # ------------------------------------------------------------- velocities
    def tracer_velocity(self, reference: Particles, points: Particles) -> Float[Array, "k D"]:
        """v[mu^M](theta~) = -grad_theta Phi[mu^M](theta~) at each row of ``points``.

        Autodiff of the objective's first variation (on the exact objective: the sampler
        is deterministic) with mu^M held fixed (Phi at different points is independent,
        so the gradient of their sum is the field at each point); frozen blocks get zero
        velocity.
        """
        obj, model = self.flow.objective, self.model
        if points.shape[0] == 0:
            return points

        def total(p):
            return jnp.sum(obj.first_variation(model, reference, p))

        return model.freeze(-jax.grad(total)(points))

    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        """(v in the block layout, the reference's risk): the reference blocks go through
        the flow's own ``velocity_blocks``, so the reference part is the plain flow's step."""
        model = self.model
        n_ref = self._n_ref(model.width(state))
        ref = jax.tree.map(lambda b: b[..., :n_ref], state)
        tr = jax.tree.map(lambda b: b[..., n_ref:], state)
        v_ref, loss = self.flow.velocity_blocks(ref, step, key)
        v_tr = model.to_blocks(self.tracer_velocity(model.from_blocks(ref), model.from_blocks(tr)))
        v = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=-1), v_ref, v_tr)
        return v, loss

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        """The velocity on the exact objective, as rows."""
        ref, tr = self.split(theta)
        v_ref, loss = self.flow.full_velocity(ref)
        v_tr = self.tracer_velocity(ref, tr)
        return jnp.concatenate([v_ref, v_tr.astype(v_ref.dtype)]), loss

    def energy(self, theta: Particles) -> Scalar:
        """E(mu^M): the energy of the reference part (the tracers carry no mass)."""
        return self.flow.energy(self.split(theta)[0])

    def penalty(self, theta: Particles) -> Scalar:
        return self.flow.penalty(self.split(theta)[0])

    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        return self.flow.risk(self.split(theta)[0], x, y)

    def dissipation(self, v: Particles) -> Scalar:
        """-dE/dt of the reference part: the flow's dissipation of its M velocities."""
        return self.flow.dissipation(v[: v.shape[0] - self.n_tracers])


class Replicas(AbstractDynamics):
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
        Sznitman (1991), Topics in propagation of chaos (the m-particle side of the
        synchronous coupling).
    """

    flow: AbstractDynamics
    n_replicas: int = eqx.field(static=True)

    def __check_init__(self):
        r = self.n_replicas
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ConfigError(f"`n_replicas` must be a positive integer; got {r!r}.")
        if isinstance(self.flow, AbstractDiffusion | AbstractJumps):
            raise ConfigError(
                f"Replicas needs a flow without noise or jumps; got {type(self.flow).__name__}."
            )

    @property
    def model(self) -> AbstractModel:
        return self.flow.model

    @property
    def bounded(self) -> bool:
        return self.flow.bounded

    @property
    def stochastic(self) -> bool:
        return self.flow.stochastic

    @property
    def exact_steps(self) -> bool:
        return self.flow.exact_steps

    def _check_rows(self, rows: int) -> None:
        if rows % self.n_replicas:
            raise ConfigError(
                f"a Replicas state needs a multiple of n_replicas = {self.n_replicas} rows; "
                f"got {rows}."
            )

    def each(self, theta: Particles) -> Float[Array, "R m D"]:
        """(R m, D) rows -> (R, m, D)."""
        rows, dim = theta.shape
        self._check_rows(rows)
        return theta.reshape(self.n_replicas, rows // self.n_replicas, dim)

    def exact(self) -> Replicas:
        return Replicas(self.flow.exact(), self.n_replicas)

    def constrain(self, state: Blocks) -> Blocks:
        return self.flow.constrain(state)

    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        """(v in the block layout, the mean over the replicas of their batch risks)."""
        r = self.n_replicas
        self._check_rows(self.model.width(state))

        def split(b):  # (..., R m) -> (R, ..., m)
            return jnp.moveaxis(b.reshape(*b.shape[:-1], r, b.shape[-1] // r), -2, 0)

        def join(b):  # (R, ..., m) -> (..., R m)
            b = jnp.moveaxis(b, 0, -2)
            return b.reshape(*b.shape[:-2], b.shape[-2] * b.shape[-1])

        each = jax.tree.map(split, state)
        v, loss = jax.vmap(lambda bl: self.flow.velocity_blocks(bl, step, key))(each)
        return jax.tree.map(join, v), jnp.mean(loss)

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        v, loss = jax.vmap(self.flow.full_velocity)(self.each(theta))
        return v.reshape(theta.shape), jnp.mean(loss)

    def energy(self, theta: Particles) -> Scalar:
        """(1/R) sum_r E(mu_r)."""
        return jnp.mean(jax.vmap(self.flow.energy)(self.each(theta)))

    def penalty(self, theta: Particles) -> Scalar:
        """(1/R) sum_r (lambda/2) int |theta|^2 dmu_r."""
        return jnp.mean(jax.vmap(self.flow.penalty)(self.each(theta)))

    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        """(1/R) sum_r R(mu_r) on (x, y)."""
        return jnp.mean(jax.vmap(lambda t: self.flow.risk(t, x, y))(self.each(theta)))

    def dissipation(self, v: Particles) -> Scalar:
        """(1/R) sum_r of the flow's dissipation of replica r's velocities."""
        return jnp.mean(jax.vmap(self.flow.dissipation)(self.each(v)))


def _same_model(a: AbstractModel, b: AbstractModel) -> bool:
    """The same model: the same structure and static fields (the particle layout) and
    equal array fields (the scaling's gamma and alpha, ...). Arrays traced inside a
    compiled function (a `Stack` rebuilt there by `exact`) cannot be compared and were
    checked when the stack was first built."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
            continue
        if eqx.is_array(x) or eqx.is_array(y):
            if jnp.shape(x) != jnp.shape(y) or not bool(jnp.all(jnp.asarray(x == y))):
                return False
        elif x != y:
            return False
    return True


class Stack(AbstractDynamics):
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

    parts: tuple[AbstractDynamics, ...]
    sizes: tuple[int, ...] = eqx.field(static=True)

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
            if isinstance(p, AbstractDiffusion | AbstractJumps) or p.stochastic:
                raise ConfigError(
                    f"Stack parts must be deterministic (no noise, jumps or minibatches); got "
                    f"{type(p).__name__}."
                )
            if not _same_model(p.model, parts[0].model):
                raise ConfigError(
                    "Stack parts must share one model (one particle layout); got "
                    f"{p.model!r} and {parts[0].model!r}."
                )

    @property
    def model(self) -> AbstractModel:
        return self.parts[0].model

    @property
    def bounded(self) -> bool:
        return any(p.bounded for p in self.parts)

    stochastic = False

    @property
    def exact_steps(self) -> bool:
        return all(p.exact_steps for p in self.parts)

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
        return Stack(tuple(p.exact() for p in self.parts), self.sizes)

    def _pieces(self, state: Blocks) -> list[Blocks]:
        return [jax.tree.map(lambda b, sl=sl: b[..., sl], state) for sl in self.slices()]

    def constrain(self, state: Blocks) -> Blocks:
        """Each part's own constraint (domain reflection) on its particles."""
        if not self.bounded:
            return state  # nothing to reflect: no copies
        out = [
            p.constrain(piece) if p.bounded else piece
            for p, piece in zip(self.parts, self._pieces(state), strict=True)
        ]
        return jax.tree.map(lambda *c: jnp.concatenate(c, axis=-1), *out)

    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        """(v in the block layout, the first part's batch risk)."""
        self._check_rows(self.model.width(state))
        out = [
            p.velocity_blocks(piece, step, key)
            for p, piece in zip(self.parts, self._pieces(state), strict=True)
        ]
        v = jax.tree.map(lambda *c: jnp.concatenate(c, axis=-1), *[v for v, _ in out])
        return v, out[0][1]

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        self._check_rows(theta.shape[0])
        pairs = zip(self.parts, self.slices(), strict=True)
        out = [p.full_velocity(theta[sl]) for p, sl in pairs]
        return jnp.concatenate([v for v, _ in out]), out[0][1]

    def energy(self, theta: Particles) -> Scalar:
        """The first part's energy."""
        return self.parts[0].energy(theta[: self.sizes[0]])

    def penalty(self, theta: Particles) -> Scalar:
        return self.parts[0].penalty(theta[: self.sizes[0]])

    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        return self.parts[0].risk(theta[: self.sizes[0]], x, y)

    def dissipation(self, v: Particles) -> Scalar:
        """The first part's dissipation."""
        return self.parts[0].dissipation(v[: self.sizes[0]])
