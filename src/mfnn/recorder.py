"""What a run keeps: metrics at recorded steps (a function of (t, particles))."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, Float, Particles, Scalar
from .dynamics.base import AbstractDynamics, AbstractJumps, diffusion_of
from .errors import ConfigError
from .integrators.base import AbstractIntegrator
from .models.resnet import WideResNet
from .models.two_layer import TwoLayer
from .targets import DataSet


class W2Monitor(eqx.Module):
    r"""W2 distances a run records, from the particle measure mu_k = (1/m) sum_j delta_theta_j:

    - ``w2_initial`` = W2(mu_k, mu_0), how far the measure moved. It
      is at most the synchronous coupling sqrt((1/m) sum_j |theta_j(t) - theta_j(0)|^2)
      (the identity matching), with equality while no two particles' paths need
      exchanging;
    - ``w2_teacher`` = W2(mu_k, rho*), rho* = sum_i alpha_i delta_{c_i} the teacher measure
      in the student's particle space (`mfnn.targets.teacher_measure`; mean_field only). It
      is 0 exactly when the student measure is the teacher's;
    - ``w2_reference`` = W2(mu_k, nu(t_k)), nu(t) the particles of a reference run (for
      instance a much wider run standing in for the limit mu(t)) at the same time
      t_k = k dt, read from its snapshots; NaN at a record time the reference has no
      snapshot for (times match within 1e-6 relative, so the reference may use another dt).

    All columns of a particle count, frozen ones included. ``method``:

    - ``"exact"``: `mfnn.diagnostics.transport.w2_exact` on the host through
      `jax.pure_callback` (assignment or network simplex, float64): O(m^3) per record,
      0.4 s at m = 1000 on 2 CPU cores, so for m up to a few thousand;
    - ``"sliced"``: `mfnn.diagnostics.transport.w2_sliced` in the compiled loop with
      ``projections`` fixed directions (the same at every record, so the time series is
      smooth), O(L m log m): a LOWER bound on W2 (SW2 <= W2), for large clouds.

    For the entropic estimate on 1e4-1e5 particles, write snapshots and apply
    `mfnn.diagnostics.transport.w2_sinkhorn` to them afterwards.

    Args:
        initial: record ``w2_initial``.
        teacher: (atoms (k, D), weights (k,)) of rho*, or None.
        reference: (times (S,), particles (S, M, D)) of the reference run, or None.
        method: ``"exact"`` or ``"sliced"``.
        projections: number of directions of the sliced estimate.
    """

    initial: bool = eqx.field(static=True, default=False)
    teacher: tuple[Float[Array, "k D"], Float[Array, " k"]] | None = None
    reference: tuple[Float[Array, " S"], Float[Array, "S M D"]] | None = None
    method: str = eqx.field(static=True, default="exact")
    projections: int = eqx.field(static=True, default=128)

    def __check_init__(self):
        if self.method not in ("exact", "sliced"):
            raise ConfigError(
                f"`record.w2.method` must be 'exact' or 'sliced'; got {self.method!r}."
            )
        if not (isinstance(self.projections, int) and self.projections >= 1):
            raise ConfigError(
                f"`record.w2.projections` must be a positive integer; got {self.projections!r}."
            )

    def names(self) -> tuple[str, ...]:
        out = ("w2_initial",) if self.initial else ()
        out += ("w2_teacher",) if self.teacher is not None else ()
        return out + (("w2_reference",) if self.reference is not None else ())

    def distance(self, x: Particles, y: Particles, q, key) -> Scalar:
        """W2 between the uniform measure on the rows of x and sum_j q_j delta_{y_j}."""
        if self.method == "sliced":
            from .diagnostics.transport import w2_sliced

            return w2_sliced(x, y, key, self.projections, q=q).astype(x.dtype)

        def host(xh, yh, qh):
            from .diagnostics.transport import w2_exact

            qh = np.asarray(qh, np.float64)  # float32 weights may sum to 1 +- 3e-8
            value = w2_exact(
                np.asarray(xh, np.float64), np.asarray(yh, np.float64), q=qh / qh.sum()
            )
            return np.asarray(value, dtype=xh.dtype)

        qq = jnp.full(y.shape[0], 1.0 / y.shape[0], x.dtype) if q is None else q.astype(x.dtype)
        out = jax.ShapeDtypeStruct((), x.dtype)
        return jax.pure_callback(host, out, x, y.astype(x.dtype), qq, vmap_method="sequential")

    def __call__(self, theta: Particles, theta0: Particles, t, key) -> dict[str, Scalar]:
        key = jax.random.fold_in(key, 0x3D2)  # the same directions at every record
        out = {}
        if self.initial:
            out["w2_initial"] = self.distance(theta, theta0, None, key)
        if self.teacher is not None:
            atoms, alpha = self.teacher
            out["w2_teacher"] = self.distance(theta, atoms.astype(theta.dtype), alpha, key)
        if self.reference is not None:
            times, clouds = self.reference
            i = jnp.argmin(jnp.abs(times - t))
            hit = jnp.abs(times[i] - t) <= 1e-6 * jnp.maximum(1.0, jnp.abs(t))
            value = self.distance(theta, clouds[i].astype(theta.dtype), None, key)
            out["w2_reference"] = jnp.where(hit, value, jnp.nan).astype(theta.dtype)
        return out


OVERLAP_FULL_MAX = 8  # OverlapMonitor: every entry of Q, R, T up to this many units


class OverlapMonitor(eqx.Module):
    r"""Order parameters of a two-layer teacher-student run (student units w_j, j <= m,
    teacher units w*_n, n <= k, rows of the first-layer weights):

        Q_jl = w_j . w_l,   R_jn = w_j . w*_n,   T_nl = w*_n . w*_l.

    With the committee-machine parametrisation W_j = sqrt(d) w_j these are W W^T / d,
    W W*^T / d, W* W*^T / d of Saad and Solla (1995) and Goldt et al. (2019): mfnn's w is
    already on the scale of the 1/sqrt(d) pre-activation, so no 1/d appears (the map is in
    `mfnn.committee`). Output weights and biases are not in the overlaps.

    With m <= 8 and k <= 8 (``full``) every entry is a column: ``Q_j_l`` (j <= l), ``R_j_n``,
    ``T_n_l`` (n <= l; constant in time, kept so that metrics.csv is self-contained), indices
    from 1. Otherwise compact summaries:

    - ``Q_diag`` = (1/m) tr Q, the mean squared norm of a unit;
    - ``Q_offdiag`` = RMS of Q_jl over j != l (how far the units are from orthogonal);
    - ``R_norm`` = |R|_F / sqrt(m), so that m copies of one teacher unit keep it O(1);
    - ``R_cos`` = (1/k) sum_n max_j R_jn / (sqrt(Q_jj T_nn)), how well the best student unit
      aligns with each teacher unit (1: every teacher direction is found);
    - ``Q_eig_1``, ``Q_eig_2``, ``Q_eig_3``: the largest eigenvalues of Q / m (those of the
      d x d second-moment matrix (1/m) sum_j w_j w_j^T; 0 past its rank).

    Args:
        teacher_w: (k, d) first-layer rows of the teacher.
        width: m, the number of student units (fixed for the run).
    """

    teacher_w: Float[Array, "k d"]
    width: int = eqx.field(static=True)

    @property
    def full(self) -> bool:
        return self.width <= OVERLAP_FULL_MAX and self.teacher_w.shape[0] <= OVERLAP_FULL_MAX

    def names(self) -> tuple[str, ...]:
        m, k = self.width, self.teacher_w.shape[0]
        if not self.full:
            return ("Q_diag", "Q_offdiag", "R_norm", "R_cos", "Q_eig_1", "Q_eig_2", "Q_eig_3")
        out = tuple(f"Q_{j + 1}_{l + 1}" for j in range(m) for l in range(j, m))
        out += tuple(f"R_{j + 1}_{n + 1}" for j in range(m) for n in range(k))
        return out + tuple(f"T_{n + 1}_{l + 1}" for n in range(k) for l in range(n, k))

    def __call__(self, w: Float[Array, "m d"]) -> dict[str, Scalar]:
        ws = self.teacher_w.astype(w.dtype)
        q, r, t = w @ w.T, w @ ws.T, ws @ ws.T
        m, k = q.shape[0], t.shape[0]
        if self.full:
            vals = [q[j, l] for j in range(m) for l in range(j, m)]
            vals += [r[j, n] for j in range(m) for n in range(k)]
            vals += [t[n, l] for n in range(k) for l in range(n, k)]
            return dict(zip(self.names(), vals, strict=True))
        diag = jnp.diagonal(q)
        off = jnp.sum(q * q) - jnp.sum(diag * diag)
        tiny = jnp.finfo(w.dtype).tiny
        norms = jnp.sqrt(jnp.maximum(diag, tiny))[:, None] * jnp.sqrt(jnp.diagonal(t))[None, :]
        second = (w.T @ w) / m  # (d, d): the nonzero spectrum of Q / m
        eig = jnp.linalg.eigvalsh(second)[::-1]
        eig = jnp.concatenate([eig, jnp.zeros(3, w.dtype)])[:3]
        return {
            "Q_diag": jnp.mean(diag),
            "Q_offdiag": jnp.sqrt(off / max(m * (m - 1), 1)),
            "R_norm": jnp.linalg.norm(r) / jnp.sqrt(jnp.asarray(m, w.dtype)),
            "R_cos": jnp.mean(jnp.max(r / norms, axis=0)),
            "Q_eig_1": eig[0],
            "Q_eig_2": eig[1],
            "Q_eig_3": eig[2],
        }


def _relative(num: Scalar, den: Scalar) -> Scalar:
    """num / den, nan when den is 0 (the movement from a start at the origin has no scale)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan).astype(num.dtype)


class AbstractRecorder(eqx.Module):
    """What a run keeps at its recorded steps: named metrics, functions of (t, particles).

    `simulate` asks for the metric names before it starts (the columns of metrics.csv),
    calls `check` before compiling, and `measure` inside the compiled loop every
    ``every`` steps; ``measure`` also returns the exact velocity it used, which the next
    deterministic step reuses.
    """

    every: eqx.AbstractVar[int]

    @abc.abstractmethod
    def names(self) -> tuple[str, ...]:
        """The metric names, in the order of the columns of metrics.csv."""

    @abc.abstractmethod
    def check(self, dynamics: AbstractDynamics) -> None:
        """Raise a `ConfigError` if a metric cannot be measured for ``dynamics``."""

    @abc.abstractmethod
    def measure(
        self,
        dynamics: AbstractDynamics,
        integrator: AbstractIntegrator,
        theta: Particles,
        theta0: Particles,
        step,
        dt,
        key,
    ) -> tuple[dict[str, Scalar], tuple[Particles, Scalar]]:
        """(metrics, (v (m, D), R)): the metrics at ``theta`` and the exact velocity and
        risk they used."""


class Recorder(AbstractRecorder):
    r"""Metrics recorded every ``every`` steps (and at the last step).

    At a recorded step k with particles theta_k (t = k dt):

    - ``loss``: R(mu_k) on the training set (the risk, without the L2 weight);
    - ``test_loss``: R on the test set, if one is given;
    - ``energy``: E = R + (lambda/2) mean_j |theta_j|^2, the functional the flow decreases;
    - ``dissipation``: -dE/dt predicted by the identity, int |grad dE/dmu|^2 dmu
      = m^(1 - 2 gamma) sum_j |v(theta_j)|^2 (= mean_j |v_j|^2 in mean_field), with the
      full-batch velocity (the dynamics' `dissipation`: for a `Langevin` drift scale s it
      is s int |grad dE/dmu|^2 dmu, the drift's);
    - ``energy_residual``: (E(theta_{k+1}) - E(theta_k)) / dt + dissipation, where
      theta_{k+1} is the deterministic part of one full-batch step of the run's integrator
      from theta_k (`AbstractIntegrator.drift_step`: no noise, no jumps, no domain
      reflection); the energy dissipation identity dE/dt = -int |grad dE/dmu|^2 dmu says
      this is O(dt) (docs/theory.md section 5). For an integrator that solves the flow
      over dt to a tolerance (``solves_flow``: `Adaptive`) the dissipation term is the
      trapezoid rule (D(theta_k) + D(theta_{k+1}))/2, and the residual is O(dt^2) plus
      the solver's error;
    - ``energy_rel_residual``: energy_residual / dissipation;
    - ``movement``: |theta_k - theta_0|_F / |theta_0|_F (relative particle movement; nan
      for a start at the origin, where it has no scale).

    For a noisy dynamics (`Langevin`) the residual uses the drift step alone (the
    identity of the deterministic part), and with ``entropy_k`` set the recorder adds

    - ``beta``: the effective inverse temperature s beta(t_k) of the free energy;
    - ``entropy``: the Kozachenko-Leonenko estimate (k = ``entropy_k`` nearest
      neighbours) of H = -int rho log rho over the trainable coordinates;
    - ``free_energy``: F = E - H / beta (the free energy of Mei, Montanari and Nguyen 2018).

    For `BirthDeath` (``jumps``) it adds ``jump_dissipation`` = alpha int (dE/dmu -
    <dE/dmu>)^2 drho: the energy identity with jumps is dE/dt = -(dissipation +
    jump_dissipation).

    With ``w2`` (a `W2Monitor`) it adds ``w2_initial``, ``w2_teacher``, ``w2_reference``
    (config ``record.w2``). With ``overlaps`` (an `OverlapMonitor`, config
    ``record.overlaps``) it adds the teacher-student order parameters Q, R, T of the first
    layer (every entry for small networks, summaries otherwise). With ``flow_norm`` = p (a
    `WideResNet` only) it adds ``flow_norm`` = exp((1/L) sum_l (mean_j |theta_j^l|_F^p)^(1/p)),
    the D_p-type quantity of the continuous-depth flow (`mfnn.models.WideResNet.flow_norm`).

    Args:
        every: record interval in steps (>= 1).
        test: optional test set.
        entropy_k: record the entropy and free energy with this many neighbours.
        jumps: record the birth-death dissipation.
        w2: W2 metrics to record, or None.
        overlaps: teacher-student overlaps to record, or None.
        flow_norm: p of the wide-ResNet's flow norm, or None.
    """

    every: int = eqx.field(static=True, default=10)
    test: DataSet | None = None
    entropy_k: int | None = eqx.field(static=True, default=None)
    jumps: bool = eqx.field(static=True, default=False)
    w2: W2Monitor | None = None
    flow_norm: float | None = eqx.field(static=True, default=None)
    overlaps: OverlapMonitor | None = None

    def __check_init__(self):
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"`record.every` must be a positive integer; got {self.every!r}.")
        k = self.entropy_k
        if k is not None and not (isinstance(k, int) and k >= 1):
            raise ConfigError(f"`record.entropy_k` must be a positive integer; got {k!r}.")

    def names(self) -> tuple[str, ...]:
        base = ("loss",) + (("test_loss",) if self.test is not None else ())
        out = base + (
            "energy",
            "dissipation",
            "energy_residual",
            "energy_rel_residual",
            "movement",
        )
        if self.entropy_k is not None:
            out += ("beta", "entropy", "free_energy")
        if self.jumps:
            out += ("jump_dissipation",)
        if self.w2 is not None:
            out += self.w2.names()
        if self.flow_norm is not None:
            out += ("flow_norm",)
        if self.overlaps is not None:
            out += self.overlaps.names()
        return out

    def check(self, dynamics: AbstractDynamics) -> None:
        """Refuse metrics the dynamics cannot give: the entropy and free energy need a
        noisy dynamics (its beta), the jump dissipation a jump dynamics."""
        if self.entropy_k is not None and diffusion_of(dynamics) is None:
            raise ConfigError(
                "`record.entropy_k` records the entropy and the free energy F = E - H/beta of "
                "a noisy dynamics; this run has no `dynamics.langevin`. Set "
                "`record.entropy_k: 0` (off) or add the noise."
            )
        if self.flow_norm is not None and not isinstance(dynamics.model, WideResNet):
            raise ConfigError(
                "the recorder's `flow_norm` is the continuous-depth norm of a wide-ResNet; the "
                f"model is a {type(dynamics.model).__name__}."
            )
        if self.overlaps is not None and not isinstance(dynamics.model, TwoLayer):
            raise ConfigError(
                "the recorder's overlaps Q, R, T are those of a two-layer network's first layer; "
                f"the model is a {type(dynamics.model).__name__}."
            )
        if self.jumps and not isinstance(dynamics, AbstractJumps):
            raise ConfigError(
                "the recorder's `jumps` (the birth-death dissipation) needs a jump dynamics "
                f"(`BirthDeath`); got {type(dynamics).__name__}."
            )

    def __call__(
        self,
        dynamics: AbstractDynamics,
        integrator: AbstractIntegrator,
        theta: Particles,
        theta0: Particles,
        step,
        dt,
        key,
    ) -> dict[str, Scalar]:
        return self.measure(dynamics, integrator, theta, theta0, step, dt, key)[0]

    def measure(
        self,
        dynamics: AbstractDynamics,
        integrator: AbstractIntegrator,
        theta: Particles,
        theta0: Particles,
        step,
        dt,
        key,
    ) -> tuple[dict[str, Scalar], tuple[Particles, Scalar]]:
        """The metrics and (v (m, D), R): the full-batch velocity and risk they used."""
        full = dynamics.exact()
        v, loss = full.full_velocity(theta)
        energy = loss + full.penalty(theta)
        dissipation = full.dissipation(v)
        nxt = integrator.drift_step(full, theta, step, dt, key, (v, loss))
        rate = dissipation
        if integrator.solves_flow:  # E(t + dt) - E(t) = -int D: the trapezoid rule
            rate = 0.5 * (dissipation + full.dissipation(full.full_velocity(nxt)[0]))
        residual = (full.energy(nxt) - energy) / dt + rate
        tiny = jnp.finfo(theta.dtype).tiny
        out = {"loss": loss}
        if self.test is not None:
            out["test_loss"] = full.risk(theta, self.test.x, self.test.y)
        out.update(
            energy=energy,
            dissipation=dissipation,
            energy_residual=residual,
            energy_rel_residual=residual / jnp.maximum(dissipation, tiny),
            movement=_relative(jnp.linalg.norm(theta - theta0), jnp.linalg.norm(theta0)),
        )
        noisy = diffusion_of(full)
        if self.entropy_k is not None and noisy is not None:
            from .diagnostics.entropy import knn_entropy

            t = jnp.asarray(step).astype(theta.dtype) * dt
            beta = noisy.beta(t).astype(theta.dtype)
            entropy = knn_entropy(theta[:, full.model.trainable_columns()], self.entropy_k)
            out.update(beta=beta, entropy=entropy, free_energy=energy - entropy / beta)
        if self.jumps and isinstance(full, AbstractJumps):
            out["jump_dissipation"] = full.jump_dissipation(theta)
        if self.w2 is not None:
            t = jnp.asarray(step).astype(theta.dtype) * dt
            out.update(self.w2(theta, theta0, t, key))
        if self.flow_norm is not None and isinstance(full.model, WideResNet):
            out["flow_norm"] = full.model.flow_norm(theta, self.flow_norm).astype(theta.dtype)
        if self.overlaps is not None and isinstance(full.model, TwoLayer):
            out.update(self.overlaps(full.model.split(theta)[1]))
        return out, (v, loss)
