r"""An adaptive embedded Runge-Kutta integrator for deterministic particle flows.

The engine (`mfnn.simulate`) is a fixed-step loop: step k takes the particles from
t_k = k dt to t_{k+1} = t_k + dt. `Adaptive` makes each such engine step an accurate
solve of the ODE

    d theta / dt = v(theta),        theta(t_k) = theta_k,

on [t_k, t_k + dt] with an embedded Runge-Kutta pair (Tsitouras 2011 by default) under
the standard error-per-step control: an internal step h is accepted when

    || e / (atol + rtol max(|theta_n|, |theta_{n+1}|)) ||_RMS <= 1,

e the difference of the pair's two solutions (the RMS over every coordinate of every
particle), and the next step is

    h_new = h * clip(0.9 err^(-1/q), 1, 10) after an accepted step,
    h_new = h * clip(0.9 err^(-1/q), 0.2, 0.9) after a rejected one,

err the norm above and q the order of the local error estimate (5 for tsit5): the
integral controller of Hairer, Norsett and Wanner 1993 ("Solving Ordinary Differential
Equations I", section II.4), as diffrax's default ``PIDController`` (Kidger 2021, "On
Neural Differential Equations", section 4.3) computes it in ``diffrax.diffeqsolve``.

So ``dt`` is only the spacing of the records: the solver takes as many internal steps
as the tolerance needs, few on a plateau of the loss, many in a fast transition. Each
engine step starts its first internal step at h = dt (a too-large h is rejected and
shrunk at once); the step size is not carried from one engine step to the next, so an
engine step is a function of its start alone and a resumed run is bit-identical to an
uninterrupted one.

Only ODEs: noise (`Langevin`), jumps (`BirthDeath`) and a stochastic sampler
(minibatch SGD, online samples, a Monte Carlo population risk) have no ODE to solve to a
tolerance, and a bounded domain's reflection is not a smooth flow; `Adaptive.check`
refuses them.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Key, Particles, Scalar
from ..dynamics.base import AbstractDynamics
from ..errors import ConfigError, did_you_mean
from ..models.base import Blocks
from ..models.resnet import ODE_SOLVERS, diffrax_solver
from .base import AbstractIntegrator, refuse_noise_and_jumps, step_rows

SOLVERS: tuple[str, ...] = ODE_SOLVERS
"""The diffrax embedded Runge-Kutta pairs `Adaptive` takes (config ``dynamics.solver``)."""

# the order of each pair's propagated solution (diffrax's `solver.order`)
ORDERS = {
    "tsit5": 5,
    "dopri5": 5,
    "dopri8": 8,
    "heun": 2,
    "midpoint": 2,
    "ralston": 2,
    "bosh3": 3,
}


def _tolerance(name: str, value) -> Scalar:
    """A tolerance as a float64 array (a traced leaf), or a `ConfigError` naming it."""
    if isinstance(value, jax.Array | np.ndarray) and value.shape == ():
        value = value.item()
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ConfigError(f"`dynamics.{name}` must be a positive finite number; got {value!r}.")
    return np.asarray(value, np.float64)


def _field(t, y: Blocks, args) -> Blocks:
    """The ODE's vector field: the dynamics' velocity of engine step ``step`` (a
    deterministic dynamics: it does not depend on ``step`` or ``key``)."""
    dynamics, step, key = args
    return dynamics.velocity_blocks(y, step, key)[0]


class Adaptive(AbstractIntegrator):
    r"""Each engine step of size dt solves d theta/dt = v(theta) on [t, t + dt] to the
    tolerance (``rtol``, ``atol``) with an embedded Runge-Kutta pair (module docstring).

    The state is the model's block layout (a pytree); the error norm is the RMS over
    every coordinate of every block, scaled by atol + rtol |theta|. The global error at
    time T is about C rtol (C grows with T and the flow's Lipschitz constant), so rtol =
    1e-10 gives ~1e-10 relative accuracy on a well-conditioned flow (measured in
    tests/integrators/test_adaptive.py).

    Velocity evaluations per internal step: the pair's stages, less one for a pair
    with the first-same-as-last property (tsit5, dopri5, dopri8, bosh3: 6, 6, 13, 3;
    heun, midpoint, ralston: 2), rejected steps included; plus one at the start of an
    engine step unless the caller passes the velocity there (``k1``, as the compiled loop
    does after a record). `Adaptive.solve` returns the counts.

    Args:
        rtol: relative tolerance (> 0, finite).
        atol: absolute tolerance (> 0, finite).
        solver: one of `SOLVERS` (tsit5: Tsitouras 2011; dopri5, dopri8: Dormand and
            Prince 1980, Prince and Dormand 1981; bosh3: Bogacki and Shampine 1989; heun,
            midpoint, ralston: second order with an Euler error estimate).
        max_steps: the most internal steps (accepted and rejected) of one engine step;
            more stops the run with an error naming `dynamics.max_steps`.

    Attributes:
        order: the order of the pair's propagated solution (5 for tsit5).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import TwoLayer, EmpiricalRisk, FullBatch, GradientFlow, DataSet
        >>> x = jnp.linspace(-1, 1, 8)[:, None]
        >>> net = TwoLayer(d=1, activation="tanh", scaling="mean_field")
        >>> data = DataSet(x, x[:, 0])
        >>> flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        >>> theta = jax.random.normal(jax.random.key(0), (4, 3))
        >>> new, stats = Adaptive(rtol=1e-8, atol=1e-10).solve(flow, theta, 1.0)
        >>> Adaptive().order, new.shape, bool(stats["accepted"] > 0)
        (5, (4, 3), True)
    """

    # arrays (traced): another tolerance runs the same compiled program
    rtol: Scalar = eqx.field(default=1e-6, converter=lambda v: _tolerance("rtol", v))
    atol: Scalar = eqx.field(default=1e-9, converter=lambda v: _tolerance("atol", v))
    solver: str = eqx.field(static=True, default="tsit5")
    max_steps: int = eqx.field(static=True, default=100_000)

    def __check_init__(self):
        if self.solver not in SOLVERS:
            raise ConfigError(
                f"`dynamics.solver` must be one of {list(SOLVERS)}; got {self.solver!r}. "
                f"{did_you_mean(str(self.solver), SOLVERS)}"
            )
        n = self.max_steps
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ConfigError(f"`dynamics.max_steps` must be a positive integer; got {n!r}.")

    solves_flow = True  # the recorder's energy identity: trapezoid rule over the step

    @property
    def order(self) -> int:  # type: ignore[override]
        return ORDERS[self.solver]

    # ------------------------------------------------------------------ solving
    def evaluations_per_step(self) -> int:
        """Velocity evaluations of one internal step (accepted or rejected)."""
        tableau = diffrax_solver(self.solver).tableau
        return len(tableau.c) + (0 if tableau.fsal else 1)

    def solve_blocks(
        self, dynamics: AbstractDynamics, state: Blocks, step, t, key: Key, k1=None
    ) -> tuple[Blocks, dict[str, Any]]:
        """theta(t) from theta(0) = ``state`` (blocks): (the state, the solver's counts).

        ``k1``: v(state) in the block layout, reused as the first stage of a pair with
        the first-same-as-last property (one evaluation less). The counts: ``accepted``
        and ``rejected`` internal steps, ``evaluations`` of the velocity (int arrays).
        Raises (at run time, from the compiled program) when ``max_steps`` internal
        steps did not reach t.
        """
        import diffrax

        dtype = jax.tree.leaves(state)[0].dtype
        t1 = jnp.asarray(t, dtype)
        solver = diffrax_solver(self.solver)
        fsal = solver.tableau.fsal
        args = (dynamics, jnp.asarray(step), key)
        solver_state, first = None, 0
        if fsal:
            # diffrax's state of a first-same-as-last pair: (first step?, f at the start).
            # Given here, a rejected first try does not evaluate f at the start again.
            if k1 is None:
                k1, first = _field(None, state, args), 1
            solver_state = (jnp.asarray(False), jax.tree.map(lambda u: u.astype(dtype), k1))
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_field),
            solver,
            jnp.zeros((), dtype),
            t1,
            t1,  # the first internal step tries the whole engine step
            state,
            args=args,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=diffrax.PIDController(
                rtol=jnp.asarray(self.rtol, dtype), atol=jnp.asarray(self.atol, dtype)
            ),
            max_steps=self.max_steps,
            throw=False,
            solver_state=solver_state,
        )
        new = jax.tree.map(lambda y: y[-1], sol.ys)
        failed = sol.result != diffrax.RESULTS.successful
        new = eqx.error_if(
            new,
            failed,
            f"the adaptive integrator (`dynamics.solver` {self.solver}) did not finish one "
            "step of size `dynamics.dt` to the tolerance (`dynamics.rtol`, `dynamics.atol`) "
            f"within `dynamics.max_steps` = {self.max_steps} internal steps: the flow is too "
            "stiff for the tolerance there, or blows up. Raise `dynamics.max_steps`, loosen "
            "`dynamics.rtol`/`atol`, or take a smaller `dynamics.dt` (the limit is per step).",
        )
        stats = {
            "accepted": sol.stats["num_accepted_steps"],
            "rejected": sol.stats["num_rejected_steps"],
            "evaluations": self.evaluations_per_step() * sol.stats["num_steps"] + first,
        }
        return new, stats

    def solve(
        self, dynamics: AbstractDynamics, theta: Particles, t: float, step=0, key: Key | None = None
    ) -> tuple[Particles, dict[str, int]]:
        """theta(t) of the flow from ``theta`` (m, D) at time 0, in one adaptive solve
        (compiled): (particles (m, D), {"accepted", "rejected", "evaluations"} as ints).

        The flow's velocity is that of ``step`` (any step of a deterministic dynamics).
        """
        self.check(dynamics)
        if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
            raise ConfigError(f"the end time of a solve must be a positive number; got {t!r}.")
        key = jax.random.key(0) if key is None else key
        theta = jnp.asarray(theta)
        t = jnp.asarray(t, theta.dtype)  # traced: another t does not compile again
        new, stats = _solve_rows(self, dynamics, theta, t, jnp.asarray(step), key)
        return new, {k: int(v) for k, v in stats.items()}

    # ------------------------------------------------------------------ interface
    def step(
        self, dynamics: AbstractDynamics, state: Blocks, step, dt, key: Key, k1=None
    ) -> tuple[Blocks, Scalar]:
        """theta(t + dt) from theta(t) = ``state`` to the tolerance, and the risk at
        ``state``; ``k1`` = (v(state), risk) when the caller has them."""
        v0, loss = dynamics.velocity_blocks(state, step, key) if k1 is None else k1
        new, _ = self.solve_blocks(dynamics, state, step, dt, key, v0)
        return new, loss

    def drift_step(self, dynamics, theta: Particles, step, dt, key: Key, k1) -> Particles:
        """The same adaptive step, on rows: the recorder's energy identity then compares
        E(t + dt) - E(t) of the flow itself with the trapezoid rule of the dissipation
        (``solves_flow``), an O(dt^2) residual beyond the tolerance."""
        return step_rows(self, dynamics, theta, step, dt, key, k1)

    def check(self, dynamics: AbstractDynamics) -> None:
        """Refuse noise, jumps, a stochastic sampler and a bounded domain."""
        refuse_noise_and_jumps(self, dynamics)
        if dynamics.stochastic:
            raise ConfigError(
                "the adaptive integrator (`dynamics.integrator: adaptive`) solves the ODE of "
                "the exact velocity to a tolerance; this dynamics draws a new batch each step "
                "(`dynamics.kind: sgd` with `dynamics.batch_size`, or "
                "`data.population.method: monte_carlo`), which has no ODE to solve. Use "
                "`dynamics.kind: gradient_flow` on the full risk, or `dynamics.integrator: "
                "euler`."
            )
        if dynamics.bounded:
            raise ConfigError(
                "the adaptive integrator cannot step a flow on a bounded domain "
                "(`dynamics.domain`): the reflection is applied between steps and breaks "
                "the error control. Remove `dynamics.domain` or use `dynamics.integrator: "
                "euler` or `heun`."
            )


@eqx.filter_jit
def _solve_rows(integrator: Adaptive, dynamics, theta, t, step, key):
    model = dynamics.model
    new, stats = integrator.solve_blocks(dynamics, model.to_blocks(theta), step, t, key)
    return model.from_blocks(new), stats


def adaptive_solve(
    dynamics: AbstractDynamics,
    theta0: Particles,
    t_end: float,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    solver: str = "tsit5",
    max_steps: int = 1_000_000,
) -> tuple[Particles, dict[str, int]]:
    r"""Solve the particle flow d theta/dt = v(theta) from ``theta0`` (m, D) at t = 0 to
    ``t_end`` in one adaptive solve (see `Adaptive`).

    Time is the flow's time t (t = step * dt of a run). Returns (theta(t_end) (m, D),
    stats) with stats ``accepted`` and ``rejected`` internal steps and ``evaluations``
    of the velocity (the cost to compare with the steps of `Euler`, one evaluation each).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import TwoLayer, EmpiricalRisk, FullBatch, GradientFlow, DataSet
        >>> x = jnp.linspace(-1, 1, 8)[:, None]
        >>> data = DataSet(x, jnp.sin(3 * x[:, 0]))
        >>> flow = GradientFlow(TwoLayer(d=1, activation="tanh"), EmpiricalRisk(data),
        ...                     FullBatch(data))
        >>> theta = jax.random.normal(jax.random.key(0), (4, 3))
        >>> end, stats = adaptive_solve(flow, theta, 10.0, rtol=1e-10, atol=1e-12)
        >>> stats["evaluations"] == 6 * (stats["accepted"] + stats["rejected"]) + 1
        True
    """
    integrator = Adaptive(rtol=rtol, atol=atol, solver=solver, max_steps=max_steps)
    return integrator.solve(dynamics, theta0, t_end)
