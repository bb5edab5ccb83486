"""`resnet_ensemble`: the ensemble-ResNet reaches zero loss from a full-support start, and
the width its measure needs grows with the dimension L d^2 of a particle."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from annotated_types import Ge
from pydantic import AfterValidator, Field

from ..config import Config
from ..rundir import list_snapshots
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Distinct, Increasing, require

if TYPE_CHECKING:
    from ..build import Built


CLAIM = """\
Theorem 3 of "Mean field models for neural networks in teacher-student setting" (section
3.1, the ensemble-ResNet). A particle is a whole vanilla ResNet theta = (theta^0, ...,
theta^{L-1}) in Theta^L = (R^{d x d})^L, X^0 = x, X^{l+1} = X^l + (1/L) tanh(theta^l X^l); the
ensemble is f(x) = (1/N) sum_j X^L_{theta_j}(x) = int X^L_theta(x) rho(dtheta) and moves by the
mean-field gradient flow (velocity -N dE/dtheta_j) of E(rho) = (1/2) E_x |f(x) - y(x)|^2 with
a teacher y(x) = int X^L_theta(x) rho*(dtheta) (here one vanilla ResNet, rho* = delta_theta*).
Claim: a stationary measure of the flow with full support has zero loss,
int X^L_theta(x) (rho - rho*)(dtheta) = 0 for every x. The paper's own caveat: Theta^L has
dimension D = L d^2, so the number N of ResNets for the N-particle model to be close to its
mean-field measure can be large.

1. Zero loss and stationarity (runs/converge, the experiment's model and data): N ResNets
drawn from a Gaussian law on Theta^L (full support), the population risk of a teacher
theta* (entries N(0, std^2)) by a Gauss-Hermite rule (x ~ N(0, I_d)), Euler to T.
Statistics: L(T)/L(0) of that risk; the same ratio on `test_inputs` fresh inputs (the
population risk out of sample) and the ratio of sup |f - y| over them (reported); the
dissipation int |v|^2 drho = -dE/dt at T over its value at 0. Thresholds: both loss ratios
<= loss_ratio, the dissipation ratio <= stationarity. The theorem needs both: a flow that
stops (dissipation -> 0) at a measure of full support has stopped at zero loss.

2. The width the measure needs (runs/shape_L<L>_d<d>, one per (L, d) in `shapes`, D = L d^2):
a reference of M ResNets trained (Euler to shape_steps * shape_dt) on shape_n_train inputs
of a vanilla-ResNet teacher of the same shape (entries N(0, shape_teacher_std^2)), stacked
(`Stack`) with `Replicas` of N-ResNet ensembles (N in `ensemble_widths`, independent draws
of the same law, trained alongside).
At t = 0 and T, over pairs of disjoint random N-subsets A, B of the reference (independent
N-samples of its measure; `widths`):
  W(N) = RMS W2(A, B) (exact) / sqrt(2 tr Cov): the measure, W(1) ~ 1;
  F(N) = RMS ||f_A - f_B||_L2 / (sqrt(2) s_f): the function, s_f^2 the variance over the
  reference's ResNets of X^L_theta(x), averaged over x, so that E F(N)^2 = 1/N exactly;
their log-log slopes s_W, s_F against N and log10 N_needed, the N at which the fitted power
law reaches `accuracy`. Two N-samples of a D-dimensional measure are W2 ~ N^(-1/D) apart
for D > 4 (Fournier and Guillin 2015; ~N^(-1/2) up to logs for D <= 4), so s_W -> -1/D and
N_needed ~ accuracy^(-D). At the N a computer holds the slope of an exact D-dimensional
Gaussian is steeper than -1/D at large D (D |s_W| grows from ~0.8 at D = 2 to ~2 at D = 54
for N <= 512): the t = 0 measure is that Gaussian and calibrates the statistic. Checks:
the exponent b of |s_W| ~ D^b fitted across shapes lies in `exponent_band` (1/D: b = -1; a
measure without the curse, e.g. one on a line in R^D: b ~ 0); log10 N_needed(W) increases
with D and spans >= `needed_decades` decades; |s_F + 1/2| <= function_tolerance at every
shape and log10 N_needed(F) spans <= `function_decades` (no curse for the function).
G(N) = RMS over replicas of ||f_N - f_M||_L2 / s_f of the trained N-ensembles at T:
propagation of chaos (Sznitman 1991; Mei, Montanari and Nguyen 2018, Theorem 3) keeps it
O(N^(-1/2)); checked: G(N) / F(N) <= 1 at every shape and N (training does not amplify the
finite-N error). Each reference is trained: L_M(T)/L_M(0) <= trained_ratio.
So the curse of L d^2 is real for the measure (what mean-field limits describe, and what
W2 propagation-of-chaos bounds inherit), while the function an N-ensemble computes is
accurate at the Monte Carlo rate N^(-1/2) with a constant that does not grow with D.
"""

Widths = Annotated[tuple[Annotated[int, Ge(2)], ...], Increasing]
Shape = tuple[Annotated[int, Ge(1)], Annotated[int, Ge(1)]]


def _band(v: tuple[float, float]) -> tuple[float, float]:
    """an interval (low, high) with low < high"""
    if not v[0] < v[1]:
        raise ValueError(f"must be (low, high) with low < high; got {list(v)}")
    return v


def _dimensions(shapes: tuple[Shape, ...]) -> tuple[Shape, ...]:
    """at least three different dimensions L d^2"""
    if len({L * d * d for L, d in shapes}) < 3:
        raise ValueError(f"needs at least three different D = L d^2; got {list(shapes)}")
    return shapes


Shapes = Annotated[tuple[Shape, ...], Distinct, AfterValidator(_dimensions)]


class ResNetEnsembleParams(Params):
    loss_ratio: float = Field(1e-3, gt=0, lt=1, description="zero loss: L(T)/L(0) <= this")
    stationarity: float = Field(1e-4, gt=0, lt=1, description="dissipation(T)/(0) <= this")
    test_inputs: int = Field(4096, ge=16, description="fresh inputs of the test risk")
    shapes: Shapes = Field(
        ((2, 1), (4, 1), (8, 1), (2, 2), (4, 2), (3, 3), (6, 3)),
        description="(L, d) of the width study, D = L d^2",
    )
    reference_width: int = Field(2048, ge=8, description="M, ResNets of each reference")
    widths: Widths = Field(
        (8, 16, 32, 64, 128, 256, 512), min_length=3, description="N of the W2 pairs"
    )
    w2_pairs: int = Field(4096, ge=1, description="pairs per N: max(min_pairs, this // N)")
    min_pairs: int = Field(2, ge=1, description="the fewest W2 pairs of a width")
    function_pairs: int = Field(64, ge=1, description="the fewest pairs of a width for F")
    ensemble_widths: Widths = Field(
        (8, 32, 128), min_length=1, description="N of the trained N-ResNet ensembles"
    )
    particles_per_width: int = Field(256, ge=1, description="replicas max(min, this // N)")
    min_replicas: int = Field(2, ge=2, description="the fewest replicas of an ensemble width")
    shape_steps: int = Field(100, ge=1, description="Euler steps of the width study")
    shape_dt: float = Field(1.0, gt=0, description="dt of the width study")
    shape_n_train: int = Field(64, ge=1, description="training inputs of the width study")
    shape_n_test: int = Field(256, ge=1, description="inputs of F and G (the L2 norms)")
    shape_teacher_std: float = Field(1.0, gt=0, description="the width study's teacher std")
    accuracy: float = Field(0.25, gt=0, lt=1, description="eps of N_needed (relative W, F)")
    exponent_band: Annotated[tuple[float, float], AfterValidator(_band)] = Field(
        (-1.25, -0.5), description="b of |s_W| ~ D^b must lie in it (theory -1)"
    )
    needed_decades: float = Field(3.0, gt=0, description="N_needed_W spans >= this")
    function_tolerance: float = Field(0.15, gt=0, description="|s_F + 1/2| <= this")
    function_decades: float = Field(1.0, gt=0, description="N_needed_F spans <= this")
    trained_ratio: float = Field(0.25, gt=0, le=1, description="L_M(T)/L_M(0) <= this")

    def check_config(self, cfg: Config) -> None:
        m, dyn, data, M = cfg.model, cfg.dynamics, cfg.data, self.reference_width
        plain = (dyn.kind, dyn.langevin, dyn.birth_death, dyn.domain)
        law = m.init.w
        teacher_act = None if data.teacher is None else data.teacher.activation
        require(
            "resnet_ensemble",
            ("model.kind", "ensemble_resnet", m.kind == "ensemble_resnet", m.kind),
            ("model.activation`, `data.teacher.activation", "tanh, unset or tanh (smooth, "
             "sigma(0) = 0; the analysis evaluates tanh ResNets)", (m.activation, teacher_act)
             in (("tanh", None), ("tanh", "tanh")), (m.activation, teacher_act)),
            ("model.init.path", "unset (the start is drawn from `model.init.w`)",
             m.init.path is None, m.init.path),
            ("model.init.w", "a gaussian law with std > 0 (a start with full support)",
             law.law == "gaussian" and law.std > 0, law.model_dump()),
            ("data.population", "set (Theorem 3 is about the population risk)",
             data.population is not None, data.population),
            ("data.teacher.path", "unset (the teacher is drawn: `data.teacher.width`, `std`)",
             data.teacher is not None and data.teacher.path is None,
             None if data.teacher is None else data.teacher.path),
            ("dynamics.kind`, `dynamics.langevin`, `dynamics.birth_death`, `dynamics.domain",
             "gradient_flow, unset, unset, unset (the plain mean-field flow)",
             plain == ("gradient_flow", None, None, None), plain),
            ("objective.l2", "0 (the risk's own flow)", cfg.objective.l2 == 0,
             cfg.objective.l2),
            ("objective.expansion", "unset", cfg.objective.expansion is None,
             cfg.objective.expansion),
            ("experiment.params.widths", f"<= reference_width / 2 = {M // 2} (two disjoint "
             "N-subsets of the reference)", 2 * self.widths[-1] <= M, list(self.widths)),
        )  # fmt: skip


def shape_name(L: int, d: int) -> str:
    return f"shape_L{L}_d{d}"


def layout(p: ResNetEnsembleParams) -> dict[str, Any]:
    """The replicas R_N = max(min_replicas, particles_per_width // N) of each ensemble width,
    the row range of each width's replicas in a width-study run and the `Stack` sizes
    (rows: the M reference ResNets, then the R_N N rows of each width, replica-major).

    Example:
        >>> lay = layout(ResNetEnsembleParams(reference_width=16, widths=(2, 4, 8),
        ...     ensemble_widths=(2, 4, 8), particles_per_width=8, min_replicas=2))
        >>> lay["replicas"], lay["systems"][4], lay["sizes"], lay["rows"]
        ({2: 4, 4: 2, 8: 2}, (24, 32), [16, 8, 8, 16], 48)
    """
    M = p.reference_width
    reps = {n: max(p.min_replicas, p.particles_per_width // n) for n in p.ensemble_widths}
    systems, start = {}, M
    for n, r in reps.items():
        systems[n] = (start, start + r * n)
        start += r * n
    return {
        "replicas": reps,
        "systems": systems,
        "sizes": [M, *(r * n for n, r in reps.items())],
        "rows": start,
    }


def stack(built: Built, lay: dict[str, Any]) -> Built:
    """``built`` with the width study's `Stack`: the reference (``built.theta0``, M rows)
    by its own flow, then the `Replicas` of each N, drawn i.i.d. from ``model.init`` with
    the key fold_in(fold_in(key(seed), 1000), N), independent of the reference."""
    import jax
    import jax.numpy as jnp

    from ..build import init_laws
    from ..dynamics.tracers import Replicas, Stack
    from ..measure import sample_particles

    cfg, flow, ref = built.config, built.dynamics, jnp.asarray(built.theta0)
    root, laws = jax.random.fold_in(jax.random.key(cfg.seed), 1000), init_laws(cfg.model.init)
    draws = [
        sample_particles(built.model, r * n, laws, jax.random.fold_in(root, n), ref.dtype)
        for n, r in lay["replicas"].items()
    ]
    parts = (flow, *(Replicas(flow, r) for r in lay["replicas"].values()))
    theta0 = jnp.concatenate([ref, *draws])
    return dataclasses.replace(built, dynamics=Stack(parts, tuple(lay["sizes"])), theta0=theta0)


def teacher_paths(cfg: Config) -> np.ndarray:
    """The teacher rho* = sum_i alpha_i delta_{theta*_i} of the zero-loss run as ``paths``
    (k, L, d, d): k = `data.teacher.width` (default 1: one vanilla ResNet) ResNets of the
    student's depth, every entry i.i.d. N(0, `data.teacher.std`^2) from the generator
    default_rng([seed, 3]). Drawn here (not by the run) so that the analysis reads it back
    without building the run."""
    t, d = cfg.data.teacher, cfg.data.population.dim
    shape = (t.width or 1, t.depth or cfg.model.depth, d, d)
    return t.std * np.random.default_rng([cfg.seed, 3]).standard_normal(shape)


def plan(s: Study[ResNetEnsembleParams]) -> dict[str, Run]:
    p, cfg = s.params, s.config
    t = cfg.data.teacher
    teacher = s.input_file("teacher", paths=teacher_paths(cfg))
    changes = {
        "data.teacher": {"path": str(teacher), "alpha": t.alpha, "depth": t.depth},
        "record.snapshot_every": cfg.dynamics.steps,
    }
    runs = {"converge": Run(s.sub_config("converge", changes), figures=False)}  # converge.png
    lay = layout(p)
    fixed = {"replicas": list(lay["replicas"].values()), "sizes": lay["sizes"]}
    for L, d in p.shapes:
        name = shape_name(L, d)
        changes = {
            "model.depth": L,
            "model.width": p.reference_width,
            "data.population": None,
            "data.inputs": {"law": "gaussian", "dim": d, "std": 1.0},
            "data.n_train": p.shape_n_train,
            "data.n_test": 0,  # the analysis draws its own inputs (shape_n_test)
            "data.teacher": {"width": 1, "std": p.shape_teacher_std},
            "dynamics.dt": p.shape_dt,
            "dynamics.steps": p.shape_steps,
            "record.every": max(1, p.shape_steps // 10),
            "record.snapshot_every": p.shape_steps,
            "experiment.params": fixed,  # what fixes the stacked state
        }
        customize = functools.partial(stack, lay=lay)
        runs[name] = Run(s.sub_config(name, changes), customize=customize, figures=False)
    return runs


# ------------------------------------------------------------------------ analysis


def population_inputs(cfg: Config, n: int, rng) -> np.ndarray:
    """n fresh inputs from the law of `data.population` (N(0, I_d) or uniform on a box)."""
    pop = cfg.data.population
    if pop.inputs == "gaussian":
        return rng.standard_normal((n, pop.dim))
    return rng.uniform(pop.low, pop.high, (n, pop.dim))


class Converged:
    """The zero-loss run read back without building it: depth, d, the teacher's ResNets
    and weights, and f(x) = mean_j X^L_{theta_j}(x) at a snapshot (NumPy)."""

    def __init__(self, r):
        from ..measure import read_npz

        cfg = r.config
        self.run, self.L, self.d = r, int(cfg.model.depth), int(cfg.data.population.dim)
        paths = np.asarray(read_npz(cfg.data.teacher.path, "data.teacher.path")["paths"])
        self.teacher, self.teacher_depth = paths.reshape(paths.shape[0], -1), paths.shape[1]
        k = self.teacher.shape[0]
        alpha = cfg.data.teacher.alpha
        self.alpha = np.full(k, 1.0 / k) if alpha is None else np.asarray(alpha, float)

    def target(self, x: np.ndarray) -> np.ndarray:
        """y(x) = sum_i alpha_i X^L_{theta*_i}(x), (n, d)."""
        units = branch_outputs(self.teacher, x, self.teacher_depth, self.d)
        return np.einsum("i,nid->nd", self.alpha, units)

    def predict(self, x: np.ndarray, which: str) -> np.ndarray:
        """f(x) at the first or last snapshot, (n, d)."""
        rows = snapshot_rows(self.run, which)
        return branch_outputs(rows, x, self.L, self.d).mean(axis=1)


def converge_statistics(r, n_test: int, seed: int) -> dict[str, Any]:
    """Check 1 from the zero-loss run: the trained (quadrature) risk ratio, the risk and the
    sup error on ``n_test`` fresh inputs from the population's law at 0 and T, and the
    dissipation ratio."""
    mt, net = r.metrics, Converged(r)
    x = population_inputs(r.config, n_test, np.random.default_rng([seed, 77]))
    y, out = net.target(x), {}
    for tag, step in (("0", "first"), ("T", "last")):
        err = net.predict(x, step) - y
        out[tag] = (0.5 * float(np.mean(np.sum(err**2, axis=1))), float(np.abs(err).max()))
    loss, diss = mt["loss"], mt["dissipation"]
    return {
        "N": int(r.config.model.width),
        "L": net.L,
        "d": net.d,
        "D": net.L * net.d**2,
        "T": float(mt["t"][-1]),
        "loss_0": float(loss[0]),
        "loss_T": float(loss[-1]),
        "loss_ratio": float(loss[-1] / loss[0]),
        "test_loss_0": out["0"][0],
        "test_loss_T": out["T"][0],
        "test_loss_ratio": out["T"][0] / out["0"][0],
        "sup_error_ratio": out["T"][1] / out["0"][1],
        "dissipation_0": float(diss[0]),
        "dissipation_T": float(diss[-1]),
        "dissipation_ratio": float(diss[-1] / diss[0]),
        "_curves": {k: (mt["t"], mt[k] / mt[k][0]) for k in ("loss", "dissipation")},
    }


def branch_outputs(theta: np.ndarray, x: np.ndarray, depth: int, d: int) -> np.ndarray:
    """X^L_{theta_j}(x_i) of every ResNet (row) of ``theta`` (m, L d^2) at every input of
    ``x`` (n, d), as (n, m, d), in NumPy (`mfnn.models.EnsembleResNet.units`, without a
    compile per shape)."""
    blocks = np.asarray(theta).reshape(theta.shape[0], depth, d, d)
    z = np.broadcast_to(np.asarray(x)[:, None, :], (x.shape[0], theta.shape[0], d)).copy()
    for layer in range(depth):
        z += np.tanh(np.einsum("jab,njb->nja", blocks[:, layer], z)) / depth
    return z


def _l2(diff: np.ndarray) -> float:
    """sqrt(mean over inputs and components of diff^2)."""
    return float(np.sqrt(np.mean(diff**2)))


def pair_statistics(cloud, units, widths, p: ResNetEnsembleParams, rng) -> dict[str, list]:
    """For each N, pairs of disjoint random N-subsets A, B of the reference (rows of
    ``cloud`` (M, D), branch outputs ``units`` (n, M, d)). W(N) = sqrt(mean W2^2(A, B)) /
    sqrt(2 tr Cov(cloud)) over max(min_pairs, w2_pairs // N) pairs; F(N) = sqrt(mean ||f_A -
    f_B||^2) / (sqrt(2) s_f) over max(function_pairs, w2_pairs // N) pairs, f_A the
    ensemble of A. Both measure one N-sample of the measure against the measure, in units
    where N = 1 gives ~1 (E F(N)^2 = 1/N exactly for disjoint subsets)."""
    from ..diagnostics import w2_exact

    scale = math.sqrt(2.0 * float(np.trace(np.atleast_2d(np.cov(cloud.T)))))
    spread = math.sqrt(2.0) * branch_spread(units)
    w, f = [], []
    for n in widths:
        w2, fd = [], []
        for i in range(max(p.min_pairs, p.function_pairs, p.w2_pairs // n)):
            idx = rng.permutation(cloud.shape[0])
            a, b = idx[:n], idx[n : 2 * n]
            if i < max(p.min_pairs, p.w2_pairs // n):
                w2.append(w2_exact(cloud[a], cloud[b], squared=True))
            if i < max(p.function_pairs, p.w2_pairs // n):
                fd.append(_l2(units[:, a].mean(axis=1) - units[:, b].mean(axis=1)) ** 2)
        w.append(math.sqrt(float(np.mean(w2))) / scale)
        f.append(math.sqrt(float(np.mean(fd))) / spread)
    return {"W": w, "F": f}


def branch_spread(units: np.ndarray) -> float:
    """s_f: sqrt(mean over inputs and components of the variance over the ResNets of
    X^L_theta(x)) (``units`` (n, M, d)): the error of a one-ResNet sample."""
    return float(np.sqrt(np.mean(np.var(units, axis=1))))


def log10_needed(fit, eps: float) -> float:
    """log10 of the N at which the fitted power law exp(c) N^s reaches ``eps`` (nan
    unless s < 0)."""
    if not (np.isfinite(fit.slope) and fit.slope < 0):
        return math.nan
    return (math.log(eps) - fit.intercept) / fit.slope / math.log(10.0)


def snapshot_rows(r, which: str) -> np.ndarray:
    """The rows (m, L d^2) of the first or last snapshot of an ensemble-ResNet run, read
    from its ``paths`` without building the run (no compile)."""
    from ..measure import read_npz

    snaps = list_snapshots(r.dir)
    at = min(snaps) if which == "first" else max(snaps)
    paths = np.asarray(read_npz(snaps[at], "snapshot", "particle file")["paths"])
    return paths.reshape(paths.shape[0], -1)


def shape_statistics(r, p: ResNetEnsembleParams, lay: dict, rng) -> dict[str, Any]:
    """W(N), F(N) (`pair_statistics`), their fits and N_needed at t = 0 and T of one
    width-study run; G(N) at T, the trained N-ensembles' distance to the reference."""
    M, L = p.reference_width, int(r.config.model.depth)
    d = int(r.config.data.inputs.dim)
    x = rng.standard_normal((p.shape_n_test, d))  # fresh inputs of the L2 norms
    loss = r.metrics["loss"]
    out: dict[str, Any] = {"L": L, "d": d, "D": L * d * d, "loss_ratio": float(loss[-1] / loss[0])}
    for tag, step in (("0", "first"), ("T", "last")):
        state = snapshot_rows(r, step)
        units = branch_outputs(state, x, L, d)  # every row: reference and replicas
        ref, ref_units = state[:M], units[:, :M]
        pairs = pair_statistics(ref, ref_units, p.widths, p, rng)
        fw, ff = loglog_fit(p.widths, pairs["W"]), loglog_fit(p.widths, pairs["F"])
        spread, f_ref = branch_spread(ref_units), ref_units.mean(axis=1)
        g = []  # RMS over replicas of ||f_N - f_M|| / s_f
        for n, (a, b) in lay["systems"].items():
            each = units[:, a:b].reshape(x.shape[0], lay["replicas"][n], n, d).mean(axis=2)
            g.append(_l2(each - f_ref[:, None]) / spread)
        out[tag] = pairs | {
            "G": g,
            "branch_spread": spread,
            "w2_slope": fw.slope,
            "w2_slope_ci95": list(fw.ci),
            "function_slope": ff.slope,
            "function_slope_ci95": list(ff.ci),
            "log10_needed_w2": log10_needed(fw, p.accuracy),
            "log10_needed_function": log10_needed(ff, p.accuracy),
        }
    t = out["T"]
    f_at = dict(zip(p.widths, t["F"], strict=True))
    f_at |= {n: float(np.exp(np.interp(np.log(n), np.log(p.widths), np.log(t["F"])))) for n in
             p.ensemble_widths if n not in f_at}  # fmt: skip
    t["trained_over_sampled"] = [
        gv / f_at[n] for n, gv in zip(p.ensemble_widths, t["G"], strict=True)
    ]
    return out


def exponent_fit(dims, slopes) -> float:
    """b of |s_W| ~ D^b: the slope of log(-s_W) vs log D (nan if some s_W >= 0)."""
    return loglog_fit(dims, -np.asarray(slopes, float)).slope


def analyze(s: Study[ResNetEnsembleParams], runs) -> dict[str, Any]:
    p = s.params
    conv = converge_statistics(runs["converge"], p.test_inputs, s.config.seed)
    lay = layout(p)
    shapes = {}
    for i, (L, d) in enumerate(p.shapes):
        rng = np.random.default_rng([s.config.seed, i])
        shapes[shape_name(L, d)] = shape_statistics(runs[shape_name(L, d)], p, lay, rng)
    dims = [v["D"] for v in shapes.values()]
    across = {}
    for tag in ("0", "T"):
        col = {k: [v[tag][k] for v in shapes.values()] for k in next(iter(shapes.values()))[tag]}
        across[tag] = {
            "D": dims,
            "w2_slope": col["w2_slope"],
            "minus_inverse_D": [-1.0 / D for D in dims],
            "w2_exponent": exponent_fit(dims, col["w2_slope"]),
            "log10_needed_w2": col["log10_needed_w2"],
            "function_slope": col["function_slope"],
            "log10_needed_function": col["log10_needed_function"],
            "branch_spread": col["branch_spread"],
        }
    across["T"]["trained_over_sampled"] = [
        max(v["T"]["trained_over_sampled"]) for v in shapes.values()
    ]
    return {
        "final_loss": conv["loss_T"],
        "converge": {k: v for k, v in conv.items() if not k.startswith("_")},
        "shapes": shapes,
        "across_shapes": across,
        "widths": list(p.widths),
        "ensemble_widths": list(p.ensemble_widths),
        "replicas": list(lay["replicas"].values()),
        "M": p.reference_width,
        "_curves": conv["_curves"],
    }


# -------------------------------------------------------------------------- checks


def _increasing_in_d(dims, values) -> bool:
    """values[i] < values[j] whenever dims[i] < dims[j] (equal dims: no order asked)."""
    pairs = [(a, b) for a in range(len(dims)) for b in range(len(dims)) if dims[a] < dims[b]]
    return all(values[a] < values[b] for a, b in pairs)


def _span(values) -> float:
    return max(values) - min(values) if all(np.isfinite(values)) else math.nan


def evaluate(s: Study[ResNetEnsembleParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    p, c, checks = s.params, stats["converge"], {}
    tol = p.loss_ratio
    v = c["loss_ratio"]
    rule = f"L(T) / L(0) of the population (quadrature) risk <= {tol:g}"
    checks["zero_loss"] = check(v, rule, v <= tol)
    v = c["test_loss_ratio"]
    rule = f"risk on {p.test_inputs} fresh inputs, L_test(T) / L_test(0) <= {tol:g}"
    checks["zero_test_loss"] = check(v, rule, v <= tol)
    v = c["dissipation_ratio"]
    rule = f"dissipation int |v|^2 drho at T / at 0 <= {p.stationarity:g} (near stationary)"
    checks["stationary"] = check(v, rule, v <= p.stationarity)
    lo, hi = p.exponent_band
    for tag, a in stats["across_shapes"].items():
        b = a["w2_exponent"]
        rule = f"b of |s_W| ~ D^b across shapes (t = {tag}) in [{lo:g}, {hi:g}] (theory -1)"
        checks[f"w2_exponent_t{tag}"] = check(b, rule, lo <= b <= hi)
        need = a["log10_needed_w2"]
        span = _span(need)
        ok = _increasing_in_d(a["D"], need) and span >= p.needed_decades
        rule = (
            f"log10 N_needed(W <= {p.accuracy:g}) at t = {tag} increases with D and spans "
            f">= {p.needed_decades:g} decades"
        )
        checks[f"width_needed_grows_t{tag}"] = check(need, rule, ok)
        fs = a["function_slope"]
        worst = max(abs(x + 0.5) for x in fs) if all(np.isfinite(fs)) else math.nan
        rule = f"max over shapes of |s_F + 1/2| (t = {tag}) <= {p.function_tolerance:g}"
        checks[f"function_rate_t{tag}"] = check(worst, rule, worst <= p.function_tolerance)
        span = _span(a["log10_needed_function"])
        rule = (
            f"log10 N_needed(F <= {p.accuracy:g}) at t = {tag} spans <= "
            f"{p.function_decades:g} decade(s) across shapes (no curse at the function level)"
        )
        checks[f"function_dimension_free_t{tag}"] = check(span, rule, span <= p.function_decades)
    ratios = stats["across_shapes"]["T"]["trained_over_sampled"]
    worst = max(ratios) if all(np.isfinite(ratios)) else math.nan
    rule = (
        "max over shapes and N of G(N, T) / F(N, T) <= 1 (a trained N-ensemble is no further "
        "from the reference than an N-sample of its measure)"
    )
    checks["trained_ensembles"] = check(worst, rule, worst <= 1.0)
    ratios = {k: v["loss_ratio"] for k, v in stats["shapes"].items()}
    worst = max(ratios.values())
    rule = f"max over shapes of the reference's L_M(T) / L_M(0) <= {p.trained_ratio:g}"
    checks["references_trained"] = check(worst, rule, worst <= p.trained_ratio)
    return checks


# ------------------------------------------------------------------------- figures


def figures(s: Study[ResNetEnsembleParams], stats: dict[str, Any], runs) -> list:
    """converge.png: L(t)/L(0) and dissipation(t)/(0), and (d = 1) y and f at 0 and T;
    width.png: at T per shape W(N), and F(N) with G(N); -s_W against D (0 and T) with 1/D;
    log10 N_needed of W and F against D."""
    from ..plots import COLORS, log_curves, loglog_fits, plt, save_figure, width_axis

    p, c, out = s.params, stats["converge"], []
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.9), layout="constrained")
    curves = {f"{k}(t) / {k}(0)": v for k, v in stats["_curves"].items()}
    log_curves(
        ax[0],
        curves,
        level=p.loss_ratio,
        xlabel="t",
        ylabel="ratio to t = 0 (log scale)",
        title=f"zero loss and stationarity, N = {c['N']}, L = {c['L']}, d = {c['d']}",
    )
    if c["d"] == 1:
        net = Converged(runs["converge"])
        xs = np.linspace(-3.0, 3.0, 301)[:, None]
        ax[1].plot(
            xs[:, 0], net.target(xs)[:, 0], color=COLORS["teacher"], lw=2, label="teacher y(x)"
        )
        for step, style, tag in (("first", ":", "0"), ("last", "--", "T")):
            ax[1].plot(xs[:, 0], net.predict(xs, step)[:, 0], style, label=f"f(x), t = {tag}")
        ax[1].set(xlabel="input x", ylabel="output (linear scale)", title="f(T) = y for every x")
        ax[1].legend(fontsize=8)
    else:
        ax[1].set_axis_off()
    fig.suptitle("the ensemble-ResNet flow reaches zero loss at a stationary full-support measure")
    out.append(save_figure(fig, s.figure_path("converge.png")))

    shapes, across = stats["shapes"], stats["across_shapes"]
    colors = plt.cm.viridis(np.linspace(0.05, 0.9, len(shapes)))
    fig, ax = plt.subplots(2, 2, figsize=(13, 9.8), layout="constrained")
    series = [
        (f"L={v['L']}, d={v['d']} (D={v['D']})", v["T"]["W"], col)
        for (_, v), col in zip(shapes.items(), colors, strict=True)
    ]
    loglog_fits(ax[0, 0], p.widths, series)
    ax[0, 0].set(
        xlabel="N (log scale)",
        ylabel="W2 / sqrt(2 tr Cov) (log scale)",
        title="two independent N-samples of the trained measure",
    )
    for (_, v), col in zip(shapes.items(), colors, strict=True):
        ax[0, 1].loglog(p.widths, v["T"]["F"], "o-", color=col, ms=3, lw=1, label=f"F, D={v['D']}")
        ax[0, 1].loglog(p.ensemble_widths, v["T"]["G"], "s--", color=col, ms=3, lw=1)
    ax[0, 1].loglog(p.widths, np.asarray(p.widths, float) ** -0.5, "k", lw=0.8, label="N^(-1/2)")
    ax[0, 1].plot([], [], "ks--", ms=3, lw=1, label="G: trained N-ensembles")
    ax[0, 1].set(
        xlabel="N (log scale)",
        ylabel="function distance / s_f (log scale)",
        title="the function: N^(-1/2) at every D (F: N-samples, G: trained)",
    )
    ax[0, 1].legend(fontsize=7)
    dims = np.array(across["T"]["D"], float)
    grid = np.geomspace(dims.min(), dims.max(), 50)
    for tag, marker in (("0", "s"), ("T", "o")):
        a = across[tag]
        ax[1, 0].loglog(dims, -np.asarray(a["w2_slope"]), marker, label=f"-s_W, t = {tag}")
    ax[1, 0].loglog(grid, 1.0 / grid, "k", lw=0.8, label="1/D")
    ax[1, 0].loglog(grid, np.full_like(grid, 0.5), "k:", lw=0.8, label="1/2")
    width_axis(ax[1, 0], sorted({int(D) for D in dims}))
    ax[1, 0].set(
        xlabel="D = L d^2 (log scale)",
        ylabel="-slope of log W vs log N (log scale)",
        title=f"-s_W falls with D: fit D^b, b = {across['T']['w2_exponent']:.2f} (theory: 1/D)",
    )
    ax[1, 0].legend(fontsize=8)
    for tag, marker in (("0", "s"), ("T", "o")):
        a = across[tag]
        ax[1, 1].plot(dims, a["log10_needed_w2"], marker + "-", label=f"measure (W), t = {tag}")
        ax[1, 1].plot(
            dims, a["log10_needed_function"], marker + "--", label=f"function (F), t = {tag}"
        )
    ax[1, 1].set(
        xlabel="D = L d^2 (linear scale)",
        ylabel=f"log10 N needed for relative error {p.accuracy:g}",
        title="width needed: exponential in D for the measure, flat for the function",
    )
    ax[1, 1].legend(fontsize=8)
    fig.suptitle(
        "the width the ResNet measure needs grows exponentially in D = L d^2; "
        "the width its function needs does not"
    )
    out.append(save_figure(fig, s.figure_path("width.png")))
    return out


RESNET_ENSEMBLE = Experiment(
    name="resnet_ensemble",
    summary="ensemble-ResNet: zero loss at a stationary full-support measure (Theorem 3); "
    "the width its measure needs grows like eps^(-L d^2), its function's does not",
    claim=CLAIM,
    params=ResNetEnsembleParams,
    quick=(
        "model.width=256",
        "dynamics.steps=300",
        "experiment.params.shapes=[[2, 1], [2, 2], [3, 3]]",
        "experiment.params.reference_width=512",
        "experiment.params.widths=[8, 16, 32, 64, 128, 256]",
        "experiment.params.w2_pairs=1024",
        "experiment.params.ensemble_widths=[16]",
        "experiment.params.particles_per_width=256",
        "experiment.params.shape_steps=50",
    ),
    checks=(
        CheckSpec("zero_loss", "L(T) / L(0) of the population risk <= loss_ratio"),
        CheckSpec("zero_test_loss", "L_test(T) / L_test(0) on fresh inputs <= loss_ratio"),
        CheckSpec("stationary", "dissipation(T) / dissipation(0) <= stationarity"),
        CheckSpec("w2_exponent_t*", "b of |s_W| ~ D^b across shapes in exponent_band"),
        CheckSpec(
            "width_needed_grows_t*",
            "log10 N_needed(W <= accuracy) increases with D, spans >= needed_decades",
        ),
        CheckSpec("function_rate_t*", "max over shapes |s_F + 1/2| <= function_tolerance"),
        CheckSpec(
            "function_dimension_free_t*",
            "log10 N_needed(F <= accuracy) spans <= function_decades across shapes",
        ),
        CheckSpec("trained_ensembles", "max over shapes and N of G(N, T) / F(N, T) <= 1"),
        CheckSpec("references_trained", "max over shapes L_M(T) / L_M(0) <= trained_ratio"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
