"""`resnet_expansion`: the small-theta expansions E_(1), E_(2) of the wide-ResNet: how well
they follow E along training, their orders in |theta| and the 1/k! weights of the k-th term,
and a local minimum of E_(2) (layers in the wrong order) that E_(1) does not have."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Annotated, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from annotated_types import Ge
from pydantic import Field, PositiveFloat

from ..build import Built, enable_dtype, init_laws, make_model
from ..config import Config
from ..dynamics.tracers import Replicas
from ..measure import sample_particles
from ..models import WideResNet
from ..objectives import EmpiricalRisk, ExpandedRisk
from ..stats import loglog_fit
from ..study import Call, CheckSpec, Experiment, Params, Run, Study, check
from ..targets import DataSet
from .common import Distinct, Increasing, require

CLAIM = """\
Section 3.2 of "Mean field models for neural networks in teacher-student setting", eqs.
(9)-(11). For the wide-ResNet X^0 = x, X^{l+1} = X^l + (1/(L N)) sum_j sigma(theta_j^l X^l),
sigma smooth with sigma(0) = 0 (tanh), expanding the L blocks around theta = 0 gives

    X_(1) = x + (1/L) sum_a S_a(x),   S_a(x) = int sigma(theta x) rho^a(dtheta),
    X_(2) = X_(1) + (1/L^2) sum_{b > a} int sigma'(theta x) * (theta S_a(x)) rho^b(dtheta),

(`WideResNet.expansion`) with errors |X^L - X_(1)| = O(|theta|^2), |X^L - X_(2)| = O(|theta|^3);
the k-th term is a sum of binom(L, k) k-linear terms of weight L^-k, so its weight tends to
1/k! as L grows. E_(k) = (1/2) E_x |X_(k) - y|^2 (`objective.expansion: k`,
`mfnn.objectives.ExpandedRisk`): X_(1) is linear in the layer measures, E_(1) is convex (a
stationary point of full support has zero loss, Theorem 4); X_(2) is quadratic, E_(2) is
quartic and "a stationary distribution might be a local minimum".

1. The energies along training (runs/exact, runs/e1, runs/e2: the experiment's model, data
and dynamics; `objective.expansion` unset, 1, 2; the same initial particles, drawn from
`model.init` by the plan, small, and a wide-ResNet teacher of the same small scale).
Statistics: track_k = max over record times of |E_(k)-run(t) - E-run(t)| / E(0) (each run's
own energy); on the particles of the exact run, gap_k = max_t |E_(k)(theta_t) - E(theta_t)|
and gain = gap_1 / gap_2. Thresholds: track_2 <= track_tolerance, gain >= order_gain,
E(T) / E(0) <= loss_drop (the particles moved).

2. The orders in |theta| (runs/orders, a computation): one configuration theta (L =
`orders_depth`, N = `orders_units`, d = the model's, i.i.d. N(0, 1) entries) and a teacher
theta* of the same law, both scaled by s in `scales`; n = `orders_inputs` inputs x ~ N(0, I).
Fitted log-log slopes against s of RMS_x |X^L - X_(k)| (claims 2 and 3) and of |E - E_(k)|
with y = X^L(x; s theta*): E - E_(k) = <X^L - X_(k), (X^L + X_(k))/2 - y> and the residual
(X^L + X_(k))/2 - y = s (int theta rho - int theta rho*) x + O(s^2) is O(s) because the teacher
is at the same scale, so the claims are k + 2 = 3 and 4 (a teacher of fixed size would give
k + 1). Thresholds: |slope - claim| <= slope_tolerance. The 1/k! weights: every block the
same measure (N units, scale `weight_scale`), depths L in `weight_depths`; then the k-th term
is binom(L, k) L^-k s^k M^k x (M = int theta rho) plus O(s^(k+1)), so c_k(L) =
<X^L - X_(k-1), s^k M^k x> / |s^k M^k x|^2 (the exact network against the expansion, X_(0) =
x + ... read as X_(1) for k = 2, X_(2) for k = 3) measures the weight. Thresholds: k! max_L
|c_k(L) - binom(L, k) L^-k| <= weight_tolerance and |k! c_k(L_max) - 1| <= factorial_tolerance.

3. A local minimum of E_(2) that E_(1) lacks (runs/trap_e2, runs/trap_e1): d = 1, L =
len(trap_teacher) blocks of one unit (a Dirac measure per block, which the Wasserstein flow
keeps a Dirac: a vanilla ResNet), the teacher theta* = trap_teacher in the class of each
energy (y = X_(2)(x; theta*) for E_(2), y = X_(1)(x; theta*) for E_(1)), x on a grid of
`trap_inputs` points in [-trap_input_range, trap_input_range]; `trap_starts` starts uniform
in [-trap_box, trap_box]^L, the same for both energies, one `Replicas` run each, Euler to T.
X_(1) depends on the layers only through their average, so E_(1) is invariant under
permuting the layers (the teacher and its reversal are both global minima); X_(2) sees
the order through b > a. A start is trapped when E_(2)(T) >= trap_level, |E_(2)(T) -
E_(2)(T/2)| <= stall_tolerance E_(2)(T) and the Hessian of E_(2) in the particles is positive
definite (a strict local minimum of the flow, not a slow saddle). Thresholds: at least one
trapped start; at least one E_(2) start with E_(2)(T) <= converge_level (the trap is not the
global minimum); every E_(1) start has E_(1)(T) <= converge_level. Reported (informational):
the flat derivative Phi_l(theta') - Phi_l(theta_l) at the trap (moving a mass eps of block l
to theta' changes E_(2) by eps times it), its minimum over theta' in [-3 trap_box, 3
trap_box]: negative means a measure with mass near that theta' does better, so the trap is
a local minimum of the Dirac (vanilla-ResNet) flow and a saddle of E_(2) on all measures.
"""

Scales = Annotated[tuple[PositiveFloat, ...], Distinct]
Depths = Annotated[tuple[Annotated[int, Ge(1)], ...], Increasing]


class ExpansionParams(Params):
    track_tolerance: float = Field(0.05, gt=0, description="max_t |E_(2)-run - E-run| / E(0)")
    order_gain: float = Field(3.0, gt=1, description="gap_1 / gap_2 >= this (same particles)")
    loss_drop: float = Field(0.2, gt=0, le=1, description="E(T) / E(0) <= this (exact run)")
    scales: Scales = Field(
        tuple(2.0**-k for k in range(3, 11)), min_length=3, description="s of the orders"
    )
    orders_depth: int = Field(4, ge=2, description="L of the orders configuration")
    orders_units: int = Field(16, ge=1, description="N of the orders configuration")
    orders_inputs: int = Field(64, ge=1, description="inputs x ~ N(0, I) of the orders")
    slope_tolerance: float = Field(0.1, gt=0, lt=1, description="|slope - claim| <= this")
    weight_depths: Depths = Field(
        (2, 4, 8, 16, 32, 64, 128, 256), min_length=2, description="L of the 1/k! weights"
    )
    weight_scale: float = Field(1e-3, gt=0, le=0.1, description="s of the 1/k! weights")
    weight_tolerance: float = Field(0.01, gt=0, description="k! max_L |c_k - binom/L^k|")
    factorial_tolerance: float = Field(0.03, gt=0, description="|k! c_k(L_max) - 1| <= this")
    trap_teacher: tuple[float, ...] = Field(
        (-4.0, 1.5), min_length=2, max_length=8, description="theta*^l, one unit a block, d = 1"
    )
    trap_starts: int = Field(32, ge=1, description="random starts, uniform in the box")
    trap_box: float = Field(6.0, gt=0, description="starts in [-box, box]^L")
    trap_inputs: int = Field(41, ge=2, description="grid of inputs")
    trap_input_range: float = Field(2.0, gt=0, description="inputs in [-range, range]")
    trap_dt: float = Field(5.0, gt=0, description="Euler step of the trap runs")
    trap_steps: int = Field(8000, ge=2, description="Euler steps of the trap runs")
    trap_records: int = Field(40, ge=2, description="records (and snapshots) of the trap runs")
    trap_level: float = Field(1e-5, gt=0, description="a trapped E_(2)(T) is >= this")
    converge_level: float = Field(1e-10, gt=0, description="E_(k)(T) <= this: minimum reached")
    stall_tolerance: float = Field(1e-6, gt=0, description="|E(T) - E(T/2)| / E(T) <= this")

    def check_config(self, cfg: Config) -> None:
        model, dyn, data, rec = cfg.model, cfg.dynamics, cfg.data, cfg.record
        flows = (dyn.kind, dyn.langevin, dyn.birth_death, dyn.domain)
        require(
            "resnet_expansion",
            ("model.kind", "wide_resnet", model.kind == "wide_resnet", model.kind),
            ("model.activation", "tanh, arctan or erf (smooth with sigma(0) = 0)",
             model.activation in ("tanh", "arctan", "erf"), model.activation),
            ("model.solver", "euler (the network the expansion is of)", model.solver == "euler",
             model.solver),
            ("model.init.path", "unset (the plan draws the shared start from `model.init`)",
             model.init.path is None, model.init.path),
            ("objective.expansion", "unset (the plan sets it per sub-run)",
             cfg.objective.expansion is None, cfg.objective.expansion),
            ("objective.l2", "0 (the energies are the risks)", cfg.objective.l2 == 0,
             cfg.objective.l2),
            ("dynamics.kind`, `dynamics.langevin`, `dynamics.birth_death`, `dynamics.domain",
             "gradient_flow, unset, unset, unset (deterministic flows)",
             flows == ("gradient_flow", None, None, None), flows),
            ("data.target`, `data.population`, `data.path", "teacher, unset, unset (a sampled "
             "training set of a wide-ResNet teacher)", data.target == "teacher"
             and data.population is None and data.path is None, data.target),
            ("record.every", f"a divisor of dynamics.steps = {dyn.steps} (T is recorded)",
             dyn.steps % rec.every == 0, rec.every),
            ("experiment.params.trap_steps", "a multiple of 2 trap_records (T/2 is recorded)",
             self.trap_steps % (2 * self.trap_records) == 0, self.trap_steps),
        )  # fmt: skip


# ------------------------------------------------------------------ 2: the orders (calls)


def _draw(seed: int, shape, salt: int) -> np.ndarray:
    return np.random.default_rng([seed, salt]).standard_normal(shape)


def expansion_orders(
    d: int, depth: int, units: int, scales: list[float], inputs: int, seed: int
) -> dict[str, Any]:
    """Errors of X_(1), X_(2) and of E_(1), E_(2) for the configuration s theta against s.

    theta, theta* (L N, d^2) and x (n, d) have i.i.d. N(0, 1) entries (NumPy generator of
    [seed, 1], [seed, 2], [seed, 3]); y = X^L(x; s theta*). Returns, for each s, RMS_x |X^L -
    X_(k)| (``output_k``) and |E - E_(k)| (``energy_k``, E the library's `EmpiricalRisk`,
    E_(k) its `ExpandedRisk`), and E itself."""
    enable_dtype("float64")
    net = WideResNet(d, depth, "tanh")
    theta = jnp.asarray(_draw(seed, (depth * units, d * d), 1))
    star = jnp.asarray(_draw(seed, (depth * units, d * d), 2))
    x = jnp.asarray(_draw(seed, (inputs, d), 3))
    out: dict[str, list[float]] = {k: [] for k in ("output_1", "output_2", "energy_1", "energy_2")}
    out["energy"] = []
    for s in scales:
        th = s * theta
        exact = net.predict(th, x)
        data = DataSet(x, net.predict(s * star, x))
        e = float(EmpiricalRisk(data).risk(net, th))
        out["energy"].append(e)
        for k in (1, 2):
            xk = net.expansion(th, x, k)
            out[f"output_{k}"].append(float(jnp.sqrt(jnp.mean(jnp.sum((exact - xk) ** 2, -1)))))
            ek = float(ExpandedRisk(EmpiricalRisk(data), k).risk(net, th))
            out[f"energy_{k}"].append(abs(e - ek))
    return out


def factorial_weights(
    d: int, units: int, depths: list[int], scale: float, inputs: int, seed: int
) -> dict[str, Any]:
    """c_k(L) of the CLAIM for k = 2, 3: every block the same N units s theta (theta (N, d^2)
    i.i.d. N(0, 1), generator [seed, 4]; x (n, d), [seed, 5]), M = mean_j theta_j (d x d),
    c_k = <X^L - X_(k-1), s^k M^k x> / |s^k M^k x|^2 summed over the inputs, and the
    predicted weights binom(L, k) / L^k."""
    enable_dtype("float64")
    theta = _draw(seed, (units, d * d), 4)
    x = jnp.asarray(_draw(seed, (inputs, d), 5))
    m = theta.mean(0).reshape(d, d)
    out: dict[str, list[float]] = {"c_2": [], "c_3": [], "w_2": [], "w_3": []}
    for L in depths:
        net = WideResNet(d, L, "tanh")
        th = jnp.asarray(scale * np.tile(theta, (L, 1)))
        exact = net.predict(th, x)
        for k in (2, 3):
            v = x @ jnp.asarray(np.linalg.matrix_power(scale * m, k)).T  # rows s^k M^k x
            diff = exact - net.expansion(th, x, k - 1)
            out[f"c_{k}"].append(float(jnp.sum(diff * v) / jnp.sum(v * v)))
            out[f"w_{k}"].append(math.comb(L, k) / L**k)
    return out


def orders(orders_args: dict[str, Any], weight_args: dict[str, Any]) -> dict[str, Any]:
    """Both computations of part 2 (one `Call`)."""
    return {
        "orders": expansion_orders(**orders_args),
        "weights": factorial_weights(**weight_args),
    }


# ------------------------------------------------------------------------ the plan


def initial_particles(cfg: Config) -> dict[str, np.ndarray]:
    """The shared start of part 1: ``model.width`` units per block drawn from
    ``model.init`` with the key `build` uses (fold_in(key(seed), 0)), as a particle file."""
    dtype = enable_dtype(cfg.dtype)
    model = make_model(cfg, cfg.data.inputs.dim)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
    theta = sample_particles(model, cfg.model.width, init_laws(cfg.model.init), key, dtype)
    return model.particle_arrays(np.asarray(theta))


def trap_teacher_rows(p: ExpansionParams) -> np.ndarray:
    return np.asarray(p.trap_teacher, float).reshape(-1, 1)


def trap_inputs(p: ExpansionParams) -> np.ndarray:
    return np.linspace(-p.trap_input_range, p.trap_input_range, p.trap_inputs)[:, None]


def trap_files(s: Study[ExpansionParams]) -> dict[str, str]:
    """The data of each energy (y = X_(k)(x; theta*) on the input grid) and the starts
    (``layers`` (L, R, 1, 1), uniform in the box, NumPy generator [seed, 3000])."""
    p = s.params
    enable_dtype("float64")
    L = len(p.trap_teacher)
    net, x = WideResNet(1, L, "tanh"), trap_inputs(p)
    star = jnp.asarray(trap_teacher_rows(p))
    files = {}
    for k in (1, 2):
        y = np.asarray(net.expansion(star, jnp.asarray(x), k))
        files[f"data_e{k}"] = str(s.input_file(f"trap_data_e{k}", x=x, y=y))
    rng = np.random.default_rng([s.config.seed, 3000])
    starts = rng.uniform(-p.trap_box, p.trap_box, (p.trap_starts, L))
    layers = starts.T.reshape(L, p.trap_starts, 1, 1)  # unit r of block l = start r
    files["starts"] = str(s.input_file("trap_starts", layers=layers))
    return files


def replicate(built: Built, starts: int) -> Built:
    """``built`` with one `Replicas` system per start: the particle file holds block l's
    unit r at row l R + r (layer-major), the replicas want start r's L rows together."""
    model, theta = built.model, jnp.asarray(built.theta0)
    L, dim = model.depth, theta.shape[1]
    rows = theta.reshape(L, starts, -1, dim).transpose(1, 0, 2, 3).reshape(-1, dim)
    return dataclasses.replace(built, dynamics=Replicas(built.dynamics, starts), theta0=rows)


def plan(s: Study[ExpansionParams]) -> dict[str, Run | Call]:
    p, cfg = s.params, s.config
    init = str(s.input_file("init", **initial_particles(cfg)))
    runs: dict[str, Run | Call] = {}
    for name, k in (("exact", None), ("e1", 1), ("e2", 2)):
        change = {"model.init.path": init, "objective.expansion": k}
        if k is None:  # the particles of the exact run, to evaluate E_(1), E_(2) on
            change["record.snapshot_every"] = cfg.record.every
        runs[name] = Run(s.sub_config(name, change), figures=False)
    runs["orders"] = Call(
        orders,
        {
            "orders_args": {
                "d": cfg.data.inputs.dim,
                "depth": p.orders_depth,
                "units": p.orders_units,
                "scales": list(p.scales),
                "inputs": p.orders_inputs,
                "seed": cfg.seed,
            },
            "weight_args": {
                "d": cfg.data.inputs.dim,
                "units": p.orders_units,
                "depths": list(p.weight_depths),
                "scale": p.weight_scale,
                "inputs": p.orders_inputs,
                "seed": cfg.seed,
            },
        },
    )
    files = trap_files(s)
    every = p.trap_steps // p.trap_records
    for k in (2, 1):
        change = {
            "model.depth": len(p.trap_teacher),
            "model.width": None,
            "model.init.path": files["starts"],
            "data.path": files[f"data_e{k}"],
            "data.target": None,
            "data.teacher": None,
            "data.n_test": 0,
            "objective.expansion": k,
            "dynamics.dt": p.trap_dt,
            "dynamics.steps": p.trap_steps,
            "record.every": every,
            "record.snapshot_every": every,
            "record.flow_norm": 0,  # the replicated state is not one network
        }
        customize = functools.partial(replicate, starts=p.trap_starts)
        runs[f"trap_e{k}"] = Run(s.sub_config(f"trap_e{k}", change), customize, figures=False)
    return runs


# -------------------------------------------------------------------- the analysis


@eqx.filter_jit
def _energies(objective, model, thetas):
    """E of each particle state in ``thetas`` (..., m, D)."""
    flat = thetas.reshape(-1, *thetas.shape[-2:])
    return jax.vmap(lambda t: objective.energy(model, t))(flat).reshape(thetas.shape[:-2])


def tracking_statistics(runs) -> dict[str, Any]:
    """Part 1: each run's energy along t, track_k, and on the exact run's snapshots the gaps
    |E_(k) - E| (gap_k: their maxima over t) and gain = gap_1 / gap_2."""
    exact = runs["exact"]
    curves = {n: (runs[n].metrics["t"], runs[n].metrics["energy"]) for n in ("exact", "e1", "e2")}
    t, e = curves["exact"]
    e0 = float(e[0])
    track = {}
    for k in (1, 2):
        tk, ek = curves[f"e{k}"]
        same = len(tk) == len(t) and np.allclose(tk, t)
        track[str(k)] = float(np.max(np.abs(ek - e)) / e0) if same and e0 > 0 else math.nan
    model, train = exact.model, exact.built.train
    steps = exact.snapshot_steps()
    thetas = jnp.asarray(np.stack([exact.particles(k) for k in steps]))
    on = {"0": np.asarray(_energies(EmpiricalRisk(train), model, thetas))}
    for k in (1, 2):
        obj = ExpandedRisk(EmpiricalRisk(train), k)
        on[str(k)] = np.asarray(_energies(obj, model, thetas))
    gaps = {k: np.abs(on[k] - on["0"]) for k in ("1", "2")}
    gap = {k: float(v.max()) for k, v in gaps.items()}
    norms = np.sqrt(np.sum(np.asarray(thetas) ** 2, axis=-1)).mean(axis=-1)
    return {
        "track": track,
        "gap": gap,
        "gain": gap["1"] / gap["2"] if gap["2"] > 0 else math.nan,
        "loss_ratio": float(e[-1] / e0) if e0 > 0 else math.nan,
        "energy_0": e0,
        "mean_norm": [float(norms[0]), float(norms.max())],
        "_curves": {n: (np.asarray(a), np.asarray(b)) for n, (a, b) in curves.items()},
        "_gaps": (np.asarray(steps) * exact.dt, gaps),
    }


def order_statistics(value: dict[str, Any], scales) -> dict[str, Any]:
    """Part 2: the log-log slopes against s (with 95% CIs) and the 1/k! weights."""
    o, w = value["orders"], value["weights"]
    fits = {k: loglog_fit(scales, o[k]) for k in ("output_1", "output_2", "energy_1", "energy_2")}
    weights = {}
    for k in (2, 3):
        c, pred = np.asarray(w[f"c_{k}"]), np.asarray(w[f"w_{k}"])
        weights[str(k)] = {
            "c": c.tolist(),
            "predicted": pred.tolist(),
            "weight_error": float(math.factorial(k) * np.max(np.abs(c - pred))),
            "factorial_limit": float(math.factorial(k) * c[-1]),
        }
    return {
        "slopes": {k: f.slope for k, f in fits.items()},
        "slope_ci95": {k: list(f.ci) for k, f in fits.items()},
        "errors": {k: o[k] for k in fits},
        "weights": weights,
    }


def _trap_flat_gap(objective, model, theta, box: float) -> dict[str, Any]:
    """min over theta' of Phi_l(theta') - Phi_l(theta_l) for each block l of a Dirac state
    ``theta`` (L, 1). F is affine in one block's measure, so E along (1 - eps) delta_theta_l
    + eps delta_theta' is a quadratic in eps and its slope at 0 is 4 E(1/2) - E(1) - 3 E(0):
    E(1/2) with every block doubled (two units) and block l's second unit at theta', E(1)
    with block l moved to theta'."""
    L = theta.shape[0]
    grid = jnp.linspace(-3.0 * box, 3.0 * box, 6001)
    e0 = objective.energy(model, theta)
    out = {"min": [], "at": []}
    for layer in range(L):

        def slope(q, layer=layer):
            half = jnp.stack([theta[:, 0], theta[:, 0].at[layer].set(q)], axis=1)  # (L, 2)
            one = theta[:, 0].at[layer].set(q)[:, None]
            e_half = objective.energy(model, half.reshape(-1, 1))
            return 4.0 * e_half - objective.energy(model, one) - 3.0 * e0

        g = jax.jit(jax.vmap(slope))(grid)
        i = int(jnp.argmin(g))
        out["min"].append(float(g[i]))
        out["at"].append(float(grid[i]))
    return out


def trap_statistics(s: Study[ExpansionParams], runs) -> dict[str, Any]:
    """Part 3: per start E_(k)(t) (snapshots), E(T), E(T/2), the dissipation at T and (E_(2))
    the smallest Hessian eigenvalue at T; the trapped starts, the converged ones, and the flat
    derivative at the first trap."""
    p = s.params
    L, R = len(p.trap_teacher), p.trap_starts
    out: dict[str, Any] = {"teacher": list(p.trap_teacher)}
    paths = {}
    for k in (2, 1):
        r = runs[f"trap_e{k}"]
        flow, model = r.built.dynamics.flow, r.model
        steps = r.snapshot_steps()
        if not steps or steps[-1] != p.trap_steps:
            return {
                "missing_times": [p.trap_steps * p.trap_dt],
                "message": r.summary.get("message"),
            }
        states = np.stack([r.particles(k_).reshape(R, L, 1) for k_ in steps])  # (S, R, L, 1)
        energy = np.asarray(_energies(flow.objective, model, jnp.asarray(states)))  # (S, R)
        half = steps.index(p.trap_steps // 2)
        last = jnp.asarray(states[-1])
        v = jax.vmap(lambda t: flow.full_velocity(t)[0])(last)
        dissipation = np.asarray(jnp.mean(jnp.sum(v**2, -1), -1))
        e_t, e_half = energy[-1], energy[half]
        stalled = np.abs(e_t - e_half) <= p.stall_tolerance * e_t
        per = {
            "energy_T": e_t.tolist(),
            "energy_0": energy[0].tolist(),
            "dissipation_T": dissipation.tolist(),
            "final": states[-1][..., 0].tolist(),
            "converged": int(np.sum(e_t <= p.converge_level)),
            "max_energy_T": float(e_t.max()),
        }
        if k == 2:
            hess = jax.vmap(jax.hessian(lambda q: flow.objective.energy(model, q.reshape(L, 1))))(
                last.reshape(R, L)
            )
            low = np.asarray(jnp.linalg.eigvalsh(hess)[:, 0])
            trapped = (e_t >= p.trap_level) & stalled & (low > 0)
            per |= {"hessian_min": low.tolist(), "trapped": int(trapped.sum())}
            per["trap_energies"] = sorted({float(f"{e:.6g}") for e in e_t[trapped]})
            if trapped.any():
                i = int(np.argmax(trapped))
                theta = jnp.asarray(states[-1][i])
                per["trap"] = states[-1][i][:, 0].tolist()
                per["trap_flat_gap"] = _trap_flat_gap(flow.objective, model, theta, p.trap_box)
                reversed_teacher = np.asarray(p.trap_teacher)[::-1]
                per["trap_to_reversed_teacher"] = float(
                    np.linalg.norm(states[-1][i][:, 0] - reversed_teacher)
                )
        out[f"e{k}"] = per
        paths[f"e{k}"] = (np.asarray(steps) * r.dt, states[..., 0], energy)
    out["_paths"] = paths
    return out


def analyze(s: Study[ExpansionParams], runs) -> dict[str, Any]:
    p = s.params
    track = tracking_statistics(runs)
    order = order_statistics(runs["orders"].value, p.scales)
    trap = trap_statistics(s, runs)
    return {
        "final_loss": float(runs["exact"].metrics["loss"][-1]),
        "tracking": track,
        "orders": order,
        "trap": trap,
    }


# ---------------------------------------------------------------------- the checks


ORDER_CLAIMS = {"output_1": 2.0, "output_2": 3.0, "energy_1": 3.0, "energy_2": 4.0}


def evaluate(s: Study[ExpansionParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    p, checks = s.params, {}
    tr = stats["tracking"]
    v = tr["track"]["2"]
    rule = f"max_t |E_(2)-run(t) - E-run(t)| / E(0) <= {p.track_tolerance:g}"
    checks["tracking_e2"] = check(v, rule, v <= p.track_tolerance)
    v = tr["gain"]
    rule = f"gap_1 / gap_2 = max_t |E_(1) - E| / max_t |E_(2) - E| >= {p.order_gain:g}"
    checks["second_order_gain"] = check(v, rule, v >= p.order_gain)
    v = tr["loss_ratio"]
    rule = f"E(T) / E(0) <= {p.loss_drop:g} (the particles moved)"
    checks["training_moves"] = check(v, rule, v <= p.loss_drop)
    o, tol = stats["orders"], p.slope_tolerance
    for key, claim in ORDER_CLAIMS.items():
        v = o["slopes"][key]
        what = "RMS |X^L - X_(k)|" if key.startswith("output") else "|E - E_(k)|"
        rule = f"|slope of log {what} vs log s - {claim:g}| <= {tol:g} (k = {key[-1]})"
        checks[f"{key.replace('_', '_order_')}"] = check(v, rule, abs(v - claim) <= tol)
    for k in ("2", "3"):
        w = o["weights"][k]
        v = w["weight_error"]
        rule = f"{k}! max_L |c_{k}(L) - binom(L, {k}) / L^{k}| <= {p.weight_tolerance:g}"
        checks[f"weights_k{k}"] = check(v, rule, v <= p.weight_tolerance)
        v = w["factorial_limit"]
        rule = f"|{k}! c_{k}(L_max) - 1| <= {p.factorial_tolerance:g} (weight -> 1/{k}!)"
        checks[f"factorial_k{k}"] = check(v, rule, abs(v - 1.0) <= p.factorial_tolerance)
    trap = stats["trap"]
    if "missing_times" in trap:
        missing = f"missing t = {trap['missing_times']}: {trap.get('message')}"
        checks["trap_run_completed"] = check(False, f"the trap runs reach T ({missing})", False)
        return checks
    e2, e1 = trap["e2"], trap["e1"]
    v = e2["trapped"]
    rule = (
        f"E_(2) starts trapped (E_(2)(T) >= {p.trap_level:g}, stalled to {p.stall_tolerance:g}"
        ", Hessian > 0) >= 1"
    )
    checks["e2_local_minimum"] = check(v, rule, v >= 1)
    v = e2["converged"]
    rule = f"E_(2) starts with E_(2)(T) <= {p.converge_level:g} >= 1 (the trap is not global)"
    checks["e2_global_minimum_reached"] = check(v, rule, v >= 1)
    v = e1["max_energy_T"]
    rule = f"max over the same starts of E_(1)(T) <= {p.converge_level:g} (no E_(1) trap)"
    checks["e1_all_converge"] = check(v, rule, v <= p.converge_level)
    if "trap_flat_gap" in e2:
        v = min(e2["trap_flat_gap"]["min"])
        rule = "min over blocks l and theta' of Phi_l(theta') - Phi_l(theta_l) at the trap >= 0"
        checks["trap_flat_gap"] = check(v, rule, v >= -1e-12)
    return checks


# --------------------------------------------------------------------- the figures


def _landscape(order: int, p: ExpansionParams, grid):
    """E_(order) on the grid of (theta^0, theta^1) for L = 2 (teacher in its class)."""
    net = WideResNet(1, 2, "tanh")
    x = jnp.asarray(trap_inputs(p))
    y = net.expansion(jnp.asarray(trap_teacher_rows(p)), x, order)
    obj = ExpandedRisk(EmpiricalRisk(DataSet(x, y)), order)
    a, b = np.meshgrid(grid, grid)
    pts = jnp.asarray(np.stack([a.ravel(), b.ravel()], 1))
    e = jax.jit(jax.vmap(lambda q: obj.energy(net, q[:, None])))(pts)
    return a, b, np.asarray(e).reshape(a.shape)


def figures(s: Study[ExpansionParams], stats: dict[str, Any], runs) -> list:
    """energies.png: E, E_(1), E_(2) along training and their gaps on the exact run's
    particles; orders.png: the errors against s and the 1/k! weights against L; trap.png:
    the E_(2) and E_(1) landscapes (L = 2) with every start's path, and E_(k)(t) per start."""
    from ..plots import log_curves, loglog_fits, plt, save_figure

    p, out = s.params, []
    tr = stats["tracking"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.4))
    labels = {"exact": "E (exact network)", "e1": "E_(1)", "e2": "E_(2)"}
    log_curves(
        ax[0],
        {labels[n]: c for n, c in tr["_curves"].items()},
        xlabel="t",
        ylabel="energy of each run (log scale)",
        title="E, E_(1), E_(2) flows from one small start",
    )
    t, gaps = tr["_gaps"]
    log_curves(
        ax[1],
        {f"|E_({k}) - E|": (t, g) for k, g in gaps.items()},
        xlabel="t",
        ylabel="gap on the exact run's particles (log scale)",
        title=f"E_(2) is closer: gain {tr['gain']:.3g} (>= {p.order_gain:g})",
    )
    fig.tight_layout()
    out.append(save_figure(fig, s.figure_path("energies.png")))

    o = stats["orders"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.6))
    names = {
        "output_1": ("|X^L - X_(1)| (claim 2)", "#2471a3"),
        "output_2": ("|X^L - X_(2)| (claim 3)", "#c0392b"),
        "energy_1": ("|E - E_(1)| (claim 3)", "#5dade2"),
        "energy_2": ("|E - E_(2)| (claim 4)", "#e59866"),
    }
    series = [(lab, o["errors"][k], col) for k, (lab, col) in names.items()]
    loglog_fits(ax[0], p.scales, series)
    ax[0].set(
        xlabel="scale s of theta (log scale)",
        ylabel="error (log scale)",
        title="errors of the expansions are O(s^2), O(s^3)",
    )
    depths = np.asarray(p.weight_depths, float)
    for k, col in (("2", "#2471a3"), ("3", "#c0392b")):
        w, f = o["weights"][k], math.factorial(int(k))
        ax[1].semilogx(depths, f * np.asarray(w["c"]), "o", color=col, label=f"{k}! c_{k}(L)")
        ax[1].semilogx(depths, f * np.asarray(w["predicted"]), "-", color=col, lw=1,
                       label=f"{k}! binom(L, {k}) / L^{k}")  # fmt: skip
    ax[1].axhline(1.0, color="k", lw=0.8, ls=":", label="1 (weight 1/k!)")
    ax[1].set(
        xlabel="depth L (log scale)",
        ylabel="k! x weight of the k-th term (linear scale)",
        title="the k-th term's weight binom(L, k) / L^k -> 1/k!",
    )
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    out.append(save_figure(fig, s.figure_path("orders.png")))

    trap = stats["trap"]
    if "missing_times" in trap:
        return out
    L = len(p.trap_teacher)
    ncols = 3 if L == 2 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 5.2))
    axes = np.atleast_1d(axes)
    if L == 2:
        grid = np.linspace(-1.2 * p.trap_box, 1.2 * p.trap_box, 161)
        star = np.asarray(p.trap_teacher)
        for ax, k in ((axes[0], 2), (axes[1], 1)):
            a, b, e = _landscape(k, p, grid)
            cs = ax.contourf(a, b, np.log10(e + 1e-30), levels=30, cmap="viridis")
            fig.colorbar(cs, ax=ax, label=f"log10 E_({k})")
            _, paths, energy = trap["_paths"][f"e{k}"]
            end = energy[-1]
            for r in range(paths.shape[1]):
                col = "#e74c3c" if end[r] >= p.trap_level else "w"
                ax.plot(paths[:, r, 0], paths[:, r, 1], "-", color=col, lw=0.7, alpha=0.8)
                ax.plot(paths[0, r, 0], paths[0, r, 1], ".", color=col, ms=3)
            ax.plot(*star, "*", color="gold", ms=14, mec="k", label="teacher")
            ax.plot(*star[::-1], "D", color="w", ms=7, mec="k", label="teacher, layers swapped")
            if k == 2 and "trap" in trap["e2"]:
                ax.plot(*trap["e2"]["trap"], "X", color="#e74c3c", ms=11, mec="k", label="trap")
            ax.set(
                xlabel="theta^0 (block 0, linear scale)",
                ylabel="theta^1 (block 1, linear scale)",
                title=f"E_({k}) landscape and flows (red: E_({k})(T) >= {p.trap_level:g})",
            )
            ax.legend(fontsize=7, loc="lower left")
    ax = axes[-1]
    for k, col in ((2, "#c0392b"), (1, "#2471a3")):
        t, _, energy = trap["_paths"][f"e{k}"]
        for r in range(energy.shape[1]):
            ax.semilogy(t, np.where(energy[:, r] > 0, energy[:, r], np.nan), color=col, lw=0.6)
        ax.plot([], [], color=col, label=f"E_({k}) flows, {energy.shape[1]} starts")
    ax.axhline(p.trap_level, color="k", ls=":", lw=0.8, label="trap level")
    ax.set(
        xlabel="t",
        ylabel="energy of each start (log scale)",
        title=f"E_(2): {trap['e2']['trapped']} trapped; E_(1): max E(T) "
        f"{trap['e1']['max_energy_T']:.1e}",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.append(save_figure(fig, s.figure_path("trap.png")))
    return out


RESNET_EXPANSION = Experiment(
    name="resnet_expansion",
    summary="wide-ResNet small-theta expansions: E_(2) tracks E, errors O(s^2)/O(s^3) with "
    "1/k! weights, and an E_(2) local minimum (layers swapped) that E_(1) lacks",
    claim=CLAIM,
    params=ExpansionParams,
    quick=(
        "dynamics.steps=100",
        "experiment.params.weight_depths=[2, 8, 32, 128]",
        "experiment.params.trap_starts=16",
        "experiment.params.trap_steps=6000",
        "experiment.params.trap_records=20",
    ),
    checks=(
        CheckSpec("tracking_e2", "max_t |E_(2)-run - E-run| / E(0) <= track_tolerance"),
        CheckSpec("second_order_gain", "max_t |E_(1) - E| / max_t |E_(2) - E| >= order_gain"),
        CheckSpec("training_moves", "E(T) / E(0) <= loss_drop"),
        CheckSpec(
            "output_order_*", "|slope of RMS |X^L - X_(k)| vs s - (k + 1)| <= slope_tolerance"
        ),
        CheckSpec("energy_order_*", "|slope of |E - E_(k)| vs s - (k + 2)| <= slope_tolerance"),
        CheckSpec("weights_k*", "k! max_L |c_k(L) - binom(L, k) / L^k| <= weight_tolerance"),
        CheckSpec("factorial_k*", "|k! c_k(L_max) - 1| <= factorial_tolerance"),
        CheckSpec("e2_local_minimum", "trapped E_(2) starts >= 1"),
        CheckSpec("e2_global_minimum_reached", "E_(2) starts with E_(2)(T) <= converge_level >= 1"),
        CheckSpec("e1_all_converge", "max over starts of E_(1)(T) <= converge_level"),
        CheckSpec(
            "trap_flat_gap",
            "min over blocks and theta' of the flat derivative at the trap >= 0",
            informational="reported, not claimed: the paper says a stationary distribution "
            "MIGHT be a local minimum; a negative value says the trap is a local minimum "
            "of the Dirac (vanilla-ResNet) flow but a saddle of E_(2) over all measures",
        ),
        CheckSpec("trap_run_completed", "reported only when a trap run misses T"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
