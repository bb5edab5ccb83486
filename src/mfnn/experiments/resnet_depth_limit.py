"""`resnet_depth_limit`: the wide-ResNet against its continuous-depth limit (O(1/L)) and
against its mean-field limit in the width (synchronous coupling, O(1/N) and O(N^-1/2))."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from annotated_types import Ge
from pydantic import Field, PositiveFloat

from ..config import Config, LawSpec
from ..rundir import list_snapshots
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Increasing, filter_jit, require

if TYPE_CHECKING:
    from ..build import Built


Counts = Annotated[tuple[Annotated[int, Ge(1)], ...], Increasing]
Times = Annotated[tuple[PositiveFloat, ...], Increasing]

CLAIM = """\
The wide-ResNet of "Mean field models for neural networks in teacher-student setting"
(section 3.2), X^0 = x, X^{l+1} = X^l + (1/(L N)) sum_j sigma(theta_j^l X^l), f(x) = X^L,
trained by the velocity -L N dE/dtheta_j^l (the mean-field flow of its L N particles
(theta, eps = l / L)), has two limits.

(a) Depth L -> infinity: the network is the forward Euler scheme, step 1/L, of the
continuous-depth model dz/ds = int sigma(theta z) rho_s(dtheta), s in [0, 1], z(0) = x,
f = z(1) (Lu, Ma, Lu, Lu and Ying 2020, "A mean-field analysis of deep ResNet and beyond";
E, Ma and Wu 2019, the flow-induced function spaces), so ||f_L - f_infinity||_L2 = O(1/L),
at t = 0 and after training every L for the same time T (the velocity -L N dE/dtheta moves
f by O(1) in O(1) time at every L; the trained particles of different L are no longer
samples of one path, the claim is on the function). Setup: N = `units` smooth particle
paths theta_j(eps) = A_j cos(pi eps) + B_j sin(pi eps), the entries of A_j, B_j i.i.d. from
`model.init.w` (so every depth has the law of `model.init`); the L-layer network takes
theta_j^l = theta_j(l / L), the LEFT points: with the model's own depth labels eps = l / L
it is then exactly the Euler scheme on the grid s_l = l / L. The continuous-depth
reference (`reference`): "ode" integrates the ODE (`model.solver: tsit5`, adaptive, rtol
1e-8) with L_ref = `reference_depth` blocks at the MIDPOINTS theta_j((l + 1/2) / L_ref): the
piecewise-constant measure the solver integrates exactly is then the midpoint rule of the
smooth one, an O(1/L_ref^2) error, and it is trained by the same flow; "richardson" takes
2 f_{2 L_ref} - f_{L_ref} of two Euler networks (left points; L_ref = L_max reuses the
deepest one), also O(1/L_ref^2). Statistics on the test inputs: D(L, t) = ||f_L(t) -
f_ref(t)||_L2 at t = 0 and T and the slope of log D against log L (claim -1, within
`depth_tolerance`); the reference's error against another second-order value of the limit,
the Richardson value R = 2 f_Lmax - f_{Lmax/2} of the two deepest networks: share(t) =
||f_ref(t) - R(t)|| / D(L_max, t) (<= `reference_share`; it bounds both errors unless they
cancel); L_ref(T) / L_ref(0) (<= `loss_drop`: T is past a small motion). Reported: the
flow norm exp(int_0^1 (int |theta|_F^2 rho_s(dtheta))^(1/2) ds) of E, Ma and Wu along
training (the `flow_norm` column of every run), its gap to the reference's at T and that
gap's slope in L.

(b) Width N -> infinity at fixed depth L = `model.depth`: propagation of chaos (Sznitman
1991; Mei, Montanari and Nguyen 2018, Theorem 3; multilayer mean field: Nguyen and Pham
2020, Araujo, Oliveira and Yukimura 2019, Sirignano and Spiliopoulos 2020) by the
synchronous coupling. A reference of M = `model.width` units per block stands in for the
limit; the N-unit student replica r starts from the reference's units r N .. (r + 1) N - 1
of every block (M / N disjoint, exchangeable replicas), and each student unit is compared
with its twin, the reference unit that started at the same point and moved by the
M-system's field. One compiled loop (`Stack` of the reference `GradientFlow` and a
`Replicas` per width; both work on the layer-major rows l N + j). Statistics at each t in
`times`: C(N, t) = mean |theta_j(t) - theta_j^M(t)|^2 (claim O(1/N) + O(1/M): slope -1
within `slope_tolerance`; its relative standard error over replicas is reported) and
F(N, t) = ||f_N(t) - f_M(t)||_L2, RMS over replicas (slope -1/2); the reference's own error
e_M = C(M/2, t) of a nested half (two replicas of M / 2 units: variance sigma^2 (2/M - 1/M)
= sigma^2 / M), share e_M / C(N_max, t) <= `reference_share`. Negative control: the same
distance with each student paired with ANOTHER replica's reference units (an independent
draw instead of the twin) does not decay: slope >= -1/2 + `pairing_margin`.

Data: one training set and one test set, x ~ `data.inputs`, y = a random wide-ResNet
teacher (`data.teacher`: Euler, its own depth), written by the plan and shared by every
sub-run. Euler in time, the same dt and T for every sub-run.
"""


class DepthLimitParams(Params):
    depths: Counts = Field((4, 8, 16, 32, 64), min_length=3, description="L of (a), Euler")
    reference: Literal["ode", "richardson"] = Field("ode", description="how f_ref is made")
    reference_depth: int = Field(128, ge=1, description="L_ref (ode: tsit5 blocks)")
    units: int = Field(8, ge=1, description="N, the units per block in (a)")
    widths: Counts = Field((8, 16, 32, 64, 128), min_length=3, description="N of (b)")
    times: Times = Field((2.0, 4.0, 8.0), min_length=1, description="(b) statistic times")
    depth_tolerance: float = Field(0.2, gt=0, lt=1, description="|slope in L + 1| <= this")
    slope_tolerance: float = Field(0.15, gt=0, lt=1, description="|slope in N - claim| <= this")
    reference_share: float = Field(0.2, gt=0, le=1, description="reference error / gap <= this")
    loss_drop: float = Field(0.5, gt=0, le=1, description="L_ref(T) / L_ref(0) <= this")
    pairing_margin: float = Field(0.25, ge=0, lt=0.5, description="unpaired slope >= -1/2 + this")

    def check_config(self, cfg: Config) -> None:
        model, dyn, data, every = cfg.model, cfg.dynamics, cfg.data, cfg.record.every
        M = model.width or 0
        k = [t / dyn.dt for t in self.times]
        grid = all(abs(v - round(v)) <= 1e-9 * v and round(v) % every == 0 for v in k)
        flows = (dyn.kind, dyn.langevin, dyn.birth_death, dyn.domain)
        require(
            "resnet_depth_limit",
            ("model.kind", "wide_resnet", model.kind == "wide_resnet", model.kind),
            ("model.solver", "euler (the network; the ODE reference switches to tsit5 itself)",
             model.solver == "euler", model.solver),
            ("model.init.path", "unset (the particles are drawn from `model.init`)",
             model.init.path is None, model.init.path),
            ("model.width", f"even, a multiple of every width and >= 2 * {self.widths[-1]} "
             "(the reference M)", M >= 2 * self.widths[-1] and M % 2 == 0
             and all(M % n == 0 for n in self.widths), M),
            ("experiment.params.depths", "ending with a doubling, L_max = 2 L_(max-1) (the "
             "Richardson value 2 f_Lmax - f_(Lmax/2) checks the reference)",
             self.depths[-1] == 2 * self.depths[-2], list(self.depths)),
            ("experiment.params.reference_depth", f">= {self.depths[-1]} (the deepest L)",
             self.reference_depth >= self.depths[-1], self.reference_depth),
            ("experiment.params.times", f"multiples of dynamics.dt * record.every = "
             f"{dyn.dt * every:g} up to the end", grid and max(k) <= dyn.steps, self.times),
            ("record.every", f"a divisor of dynamics.steps = {dyn.steps} (T is recorded)",
             dyn.steps % every == 0, every),
            ("dynamics.kind`, `dynamics.langevin`, `dynamics.birth_death`, `dynamics.domain",
             "gradient_flow, unset, unset, unset (deterministic flows)",
             flows == ("gradient_flow", None, None, None), flows),
            ("data.population`, `data.path`, `data.target", "unset, unset, teacher (the plan "
             "writes one training set from the teacher)", data.population is None
             and data.path is None and data.target == "teacher", data.target),
            ("data.test_path`, `data.n_test", "unset, >= 1 (the L2 distances are on the test "
             "inputs the plan draws)", data.test_path is None and data.n_test >= 1,
             data.n_test),
        )  # fmt: skip


# ------------------------------------------------------------------------- the plan


@filter_jit
def _draw_data(target, law, n_train: int, n_test: int, root, dtype, noise: float):
    """`sample_dataset` of the training set (key fold_in(root, 1)) and the test set
    (fold_in(root, 2)) in one compiled call."""
    import jax

    from ..targets import sample_dataset

    keys = (jax.random.fold_in(root, 1), jax.random.fold_in(root, 2))
    return tuple(
        sample_dataset(target, law, n, k, dtype, noise)
        for n, k in zip((n_train, n_test), keys, strict=True)
    )


def data_files(s: Study[DepthLimitParams]) -> dict[str, str]:
    """The training and test sets every sub-run shares, as input files: the draw `build`
    makes for this config (teacher: a wide-ResNet of ``data.teacher``, entries N(0, std^2),
    key fold_in(key(seed), 4); training inputs fold_in(., 1), test inputs fold_in(., 2))."""
    import jax
    import jax.numpy as jnp

    from ..build import enable_dtype, init_law
    from ..models import WideResNet
    from ..targets import GaussianInputs, ModelTeacher, UniformBox

    cfg = s.config
    dtype, d, spec, data = enable_dtype(cfg.dtype), cfg.data.inputs.dim, cfg.data.teacher, cfg.data
    teacher = WideResNet(d, spec.depth or cfg.model.depth, spec.activation or cfg.model.activation)
    root = jax.random.key(cfg.seed)
    law = init_law(LawSpec(law="gaussian", std=spec.std))
    theta = teacher.sample(jax.random.fold_in(root, 4), spec.width or 1, {"w": law}, jnp.float64)
    inputs = data.inputs
    if inputs.law == "uniform":
        draw = UniformBox(d, inputs.low, inputs.high)
    else:
        draw = GaussianInputs(d, inputs.std)
    sets = _draw_data(
        ModelTeacher(teacher, theta), draw, data.n_train, data.n_test, root, dtype, data.noise
    )
    return {
        name: str(s.input_file(name, x=np.asarray(ds.x), y=np.asarray(ds.y)))
        for name, ds in zip(("train", "test"), sets, strict=True)
    }


def path_layers(cfg: Config, units: int, depth: int, offset: float) -> np.ndarray:
    """``layers`` (L, N, d, d) of the particle paths theta_j(eps) = A_j cos(pi eps) +
    B_j sin(pi eps) at eps_l = (l + offset) / L: A, B (N, d^2) with i.i.d. entries from
    ``model.init.w`` (keys fold_in(fold_in(key(seed), 2000), 0 and 1): the same paths at
    every depth)."""
    import jax

    from ..build import enable_dtype, init_laws

    dtype = enable_dtype(cfg.dtype)
    d, law = cfg.data.inputs.dim, init_laws(cfg.model.init)["w"]
    root = jax.random.fold_in(jax.random.key(cfg.seed), 2000)
    a, b = (
        np.asarray(law.sample(jax.random.fold_in(root, i), (units, d * d), dtype)) for i in (0, 1)
    )
    eps = (np.arange(depth) + offset) / depth
    layers = np.cos(np.pi * eps)[:, None, None] * a + np.sin(np.pi * eps)[:, None, None] * b
    return layers.reshape(depth, units, d, d)


def twins(reference: np.ndarray, depth: int, n: int) -> np.ndarray:
    """The reference rows (L M, D) (row l M + i = unit i of block l) grouped as the twins of
    the M / n student replicas of width n: (M / n, L n, D), replica r = units r n .. (r + 1) n
    - 1 of every block, layer-major (row l n + j)."""
    ref = np.asarray(reference)
    dim = ref.shape[-1]
    m = ref.shape[0] // depth
    r = m // n
    return ref.reshape(depth, r, n, dim).transpose(1, 0, 2, 3).reshape(r, depth * n, dim)


def coupled_widths(p: DepthLimitParams, M: int) -> tuple[int, ...]:
    """The widths of the coupling run: the checked ones, then M / 2 (the nested half whose
    coupling distance is the reference's own error)."""
    return (*p.widths, M // 2)


def couple(built: Built, widths: tuple[int, ...]) -> Built:
    """``built`` with the stacked coupling state: the reference (its L M rows, drawn from
    ``model.init``), then for each width n the M / n replicas (replica-major, each L n rows
    layer-major) that start at the reference's units (`twins`)."""
    import jax.numpy as jnp

    from ..dynamics.tracers import Replicas, Stack

    ref, model = jnp.asarray(built.theta0), built.model
    L, M = model.depth, model.width_of(built.theta0)
    flow = built.dynamics
    students = [jnp.asarray(twins(ref, L, n)).reshape(L * M, -1) for n in widths]
    parts = (flow, *(Replicas(flow, M // n) for n in widths))
    stack = Stack(parts, (L * M,) * (1 + len(widths)))
    theta0 = jnp.concatenate([ref, *students])
    return dataclasses.replace(built, dynamics=stack, theta0=theta0)


def reference_runs(s: Study[DepthLimitParams]) -> dict[str, dict[str, Any]]:
    """The sub-run changes of the continuous-depth reference: "ode", one tsit5 run of
    L_ref blocks at the midpoints; "richardson", Euler runs of L_ref and 2 L_ref blocks at
    the left points."""
    p, cfg, L = s.params, s.config, s.params.reference_depth
    if p.reference == "ode":
        path = s.input_file(f"paths_mid_L{L}", layers=path_layers(cfg, p.units, L, 0.5))
        return {
            "reference": {"model.depth": L, "model.init.path": str(path), "model.solver": "tsit5"}
        }
    out = {}
    for depth in (L, 2 * L):
        if depth not in p.depths:  # a depth of the fit is its own run
            path = s.input_file(f"paths_L{depth}", layers=path_layers(cfg, p.units, depth, 0.0))
            out[f"reference_L{depth}"] = {"model.depth": depth, "model.init.path": str(path)}
    return out


def richardson_runs(p: DepthLimitParams) -> tuple[str, str]:
    """The runs of L_ref and 2 L_ref blocks of the "richardson" reference (a depth of
    `depths` is its ``depth_L`` run)."""
    L = p.reference_depth
    return tuple(f"depth_L{n}" if n in p.depths else f"reference_L{n}" for n in (L, 2 * L))


def plan(s: Study[DepthLimitParams]) -> dict[str, Run]:
    p, cfg = s.params, s.config
    steps = cfg.dynamics.steps
    files = data_files(s)
    common = {
        "data.path": files["train"],
        "data.test_path": files["test"],
        "data.target": None,
        "data.teacher": None,
    }
    runs: dict[str, Run] = {}
    depth_runs = common | {"model.width": p.units, "record.snapshot_every": steps}
    for L in p.depths:  # the Euler network at the left points l / L
        path = s.input_file(f"paths_L{L}", layers=path_layers(cfg, p.units, L, 0.0))
        change = depth_runs | {"model.depth": L, "model.init.path": str(path)}
        runs[f"depth_L{L}"] = Run(s.sub_config(f"depth_L{L}", change), figures=False)
    for name, change in reference_runs(s).items():
        runs[name] = Run(s.sub_config(name, depth_runs | change), figures=False)
    widths = coupled_widths(p, cfg.model.width)
    time_steps = [round(t / cfg.dynamics.dt) for t in p.times]
    change = common | {
        "record.snapshot_every": math.gcd(*time_steps),
        "record.flow_norm": 0,  # the stacked state is not one network
        "experiment.params": {"widths": list(widths)},  # what fixes the stacked state
    }
    customize = functools.partial(couple, widths=widths)
    runs["width"] = Run(s.sub_config("width", change), customize=customize)
    return runs


# --------------------------------------------------------------------- the analysis


def l2(f, g) -> float:
    """sqrt(mean_i |f(x_i) - g(x_i)|^2) of outputs (..., n, d): the L2 distance on the test
    inputs, the RMS over any leading (replica) axes."""
    diff = np.asarray(f) - np.asarray(g)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=-1))))


@filter_jit
def _predict(model, theta, x):
    return model.predict(theta, x)


@filter_jit
def _predict_each(model, thetas, x):
    import jax

    return jax.vmap(lambda t: model.predict(t, x))(thetas)


class Finished:
    """What the analysis reads of a finished sub-run, without rebuilding it: its model
    (`make_model`), test inputs (the input file), snapshots and metrics."""

    def __init__(self, r):
        import jax.numpy as jnp

        from ..build import make_model

        cfg = r.config
        with np.load(cfg.data.test_path) as z:
            self.x = jnp.asarray(z["x"], cfg.dtype)
        self.model = make_model(cfg, self.x.shape[1])
        self.snaps = list_snapshots(r.dir)
        self.metrics = r.metrics
        self.dt = r.dt

    def particles(self, step: int | str) -> np.ndarray:
        at = {"first": min(self.snaps), "last": max(self.snaps)}.get(step, step)
        with np.load(self.snaps[at]) as z:
            layers = z["layers"]
        return layers.reshape(-1, layers.shape[-1] ** 2)

    def predict(self, theta) -> np.ndarray:
        import jax.numpy as jnp

        return np.asarray(_predict(self.model, jnp.asarray(theta), self.x))

    def predict_each(self, thetas) -> np.ndarray:
        import jax.numpy as jnp

        return np.asarray(_predict_each(self.model, jnp.asarray(thetas), self.x))


def reference_function(p: DepthLimitParams, f: dict[str, dict[str, np.ndarray]]):
    """f_ref at "first" and "last" from the predictions ``f`` of the reference runs, and the
    name of the run whose metrics stand for the reference (the ODE, or the deeper Euler
    network of the Richardson pair)."""
    if p.reference == "ode":
        return f["reference"], "reference"
    lo, hi = (f[name] for name in richardson_runs(p))
    return {w: 2.0 * hi[w] - lo[w] for w in hi}, richardson_runs(p)[1]


def depth_statistics(s: Study[DepthLimitParams], runs) -> dict[str, Any]:
    """(a): D(L, t) and its slope in L at t = 0 and T, the reference's share, the loss
    ratio and the flow norms (the curves under ``_curves``, for the figure)."""
    p = s.params
    names = [n for n in runs if n.startswith(("depth_", "reference"))]
    done = {n: Finished(runs[n]) for n in names}
    f = {n: {w: r.predict(r.particles(w)) for w in ("first", "last")} for n, r in done.items()}
    f_ref, ref_name = reference_function(p, f)
    T = float(max(done[ref_name].snaps) * done[ref_name].dt)
    top, below = (f[f"depth_L{L}"] for L in (p.depths[-1], p.depths[-2]))
    gaps, ref_err, share, fits = {}, {}, {}, {}
    for w, t in (("first", "0"), ("last", f"{T:g}")):
        gaps[t] = [l2(f[f"depth_L{L}"][w], f_ref[w]) for L in p.depths]
        richardson = 2.0 * top[w] - below[w]  # f_inf + O(1/L_max^2), independent of f_ref
        ref_err[t] = l2(f_ref[w], richardson)
        share[t] = ref_err[t] / gaps[t][-1] if gaps[t][-1] > 0 else math.nan
        fits[t] = loglog_fit(p.depths, gaps[t])
    curves = {n: r.metrics for n, r in done.items()}
    loss = curves[ref_name]["loss"]
    norm = {n: [float(m["flow_norm"][0]), float(m["flow_norm"][-1])] for n, m in curves.items()}
    if p.reference == "ode":
        norm_ref = norm["reference"][1]
    else:  # the Richardson value of the flow norm, like f_ref
        lo, hi = (norm[name][1] for name in richardson_runs(p))
        norm_ref = 2.0 * hi - lo
    norm_gap = [abs(norm[f"depth_L{L}"][1] - norm_ref) for L in p.depths]
    return {
        "T": T,
        "depths": list(p.depths),
        "reference": p.reference,
        "reference_run": ref_name,
        "function_gap": gaps,
        "slope": {t: v.slope for t, v in fits.items()},
        "slope_ci95": {t: list(v.ci) for t, v in fits.items()},
        "reference_error": ref_err,
        "reference_share": share,
        "function_change": l2(f_ref["last"], f_ref["first"]),
        "loss_ratio": float(loss[-1] / loss[0]) if loss[0] > 0 else math.nan,
        "final_loss": {n: float(m["loss"][-1]) for n, m in curves.items()},
        "flow_norm": norm,
        "flow_norm_reference_T": norm_ref,
        "flow_norm_gap_T": norm_gap,
        "flow_norm_gap_slope": loglog_fit(p.depths, norm_gap).slope,
        "_curves": {n: (m["t"], m["flow_norm"], m["loss"]) for n, m in curves.items()},
    }


def width_statistics(s: Study[DepthLimitParams], run) -> dict[str, Any]:
    """(b): C(N, t) (with its relative standard error over replicas), F(N, t) and the
    unpaired control at t = 0 and each of `times`; e_M and its share."""
    from ..diagnostics import coupling_distance

    p, M, r = s.params, s.config.model.width, Finished(run)
    L, dim, widths = r.model.depth, r.model.dim, coupled_widths(p, M)
    want = {0.0: 0, **{t: round(t / r.dt) for t in p.times}}
    missing = [t for t, k in want.items() if k not in r.snaps]
    if missing:
        return {"missing_times": missing, "message": run.summary.get("message")}
    rows, per_t = L * M, {}
    keys = ("coupling", "coupling_rse", "function", "unpaired")
    for t, k in want.items():
        state = r.particles(k)
        ref = state[:rows]
        f_ref = r.predict(ref)
        out: dict[str, list[float]] = {key: [] for key in keys}
        for i, n in enumerate(widths):
            students = state[rows * (i + 1) : rows * (i + 2)].reshape(M // n, L * n, dim)
            tw = twins(ref, L, n)
            per = coupling_distance(students, tw)  # one value a replica
            c = float(per.mean())
            out["coupling"].append(c)
            rse = float(per.std(ddof=1) / c / math.sqrt(len(per))) if c > 0 else math.nan
            out["coupling_rse"].append(rse)
            out["unpaired"].append(float(coupling_distance(students, np.roll(tw, 1, 0)).mean()))
            out["function"].append(l2(r.predict_each(students), f_ref[None]))
        per_t[f"{t:g}"] = out
    n = len(p.widths)
    stats = {key: {t: v[key][:n] for t, v in per_t.items()} for key in keys}
    ref_err = {t: v["coupling"][n] for t, v in per_t.items() if t != "0"}
    share = {t: e / stats["coupling"][t][-1] for t, e in ref_err.items()}
    slopes = {
        key: {t: loglog_fit(p.widths, v).slope for t, v in stats[key].items()}
        for key in ("coupling", "function", "unpaired")
    }
    del slopes["coupling"]["0"]  # C(N, 0) = 0: the same initial points
    loss = r.metrics["loss"]
    return {
        "M": M,
        "L": L,
        "widths": list(p.widths),
        "replicas": [M // w for w in p.widths],
        "statistics": stats,
        "slopes": slopes,
        "reference_error": ref_err,
        "reference_share": share,
        "loss_ratio": float(loss[-1] / loss[0]) if loss[0] > 0 else math.nan,
    }


def analyze(s: Study[DepthLimitParams], runs) -> dict[str, Any]:
    depth = depth_statistics(s, runs)
    width = width_statistics(s, runs["width"])
    curves = depth.pop("_curves")
    return {"depth": depth, "width": width, "_curves": curves}


def evaluate(s: Study[DepthLimitParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    p, a, b, checks = s.params, stats["depth"], stats["width"], {}
    tol, share = p.depth_tolerance, p.reference_share
    for t, v in a["slope"].items():
        rule = f"|slope of log ||f_L - f_ref||(t={t}) vs log L - (-1)| <= {tol:g}"
        checks[f"depth_slope_t{t}"] = check(v, rule, abs(v + 1.0) <= tol)
        v = a["reference_share"][t]
        rule = (
            f"||f_ref - (2 f_Lmax - f_Lmax/2)||(t={t}) / ||f_Lmax - f_ref||(t={t}) <= {share:g} "
            "(the continuous-depth reference's own error is small)"
        )
        checks[f"depth_reference_t{t}"] = check(v, rule, v <= share)
    v = a["loss_ratio"]
    rule = f"L_ref(T) / L_ref(0) <= {p.loss_drop:g} (training moved the function)"
    checks["depth_training"] = check(v, rule, v <= p.loss_drop)
    if "missing_times" in b:
        missing = f"missing t = {b['missing_times']}: {b.get('message')}"
        rule = f"the width run reaches every time ({missing})"
        checks["width_run_completed"] = check(False, rule, False)
        return checks
    tol, floor = p.slope_tolerance, -0.5 + p.pairing_margin
    for t in (f"{t:g}" for t in p.times):
        for key, claim, what in (("coupling", -1.0, "C"), ("function", -0.5, "F")):
            v = b["slopes"][key][t]
            rule = f"|slope of log {what}(N, t={t}) vs log N - ({claim:g})| <= {tol:g}"
            checks[f"width_{key}_slope_t{t}"] = check(v, rule, abs(v - claim) <= tol)
        v = b["reference_share"][t]
        rule = f"e_M / C(N_max, t={t}) <= {share:g} (the width reference's own error is small)"
        checks[f"width_reference_t{t}"] = check(v, rule, v <= share)
        v = b["slopes"]["unpaired"][t]
        rule = f"slope of log C_unpaired(N, t={t}) vs log N >= {floor:g} (no rate without twins)"
        checks[f"width_unpaired_slope_t{t}"] = check(v, rule, v >= floor)
    return checks


# ----------------------------------------------------------------------- the figures


def figures(s: Study[DepthLimitParams], stats: dict[str, Any], runs) -> list:
    """depth.png: D(L, t) against L (dotted: the reference's error), the flow norm and the
    loss along training of every depth and the reference; width.png: C and F against N at
    each time (dotted: e_M), and the unpaired control."""
    from ..plots import loglog_fits, plt, save_figure

    p, a, b = s.params, stats["depth"], stats["width"]
    out = []
    fig, ax = plt.subplots(1, 3, figsize=(16, 5.1), layout="constrained")
    colors = dict(zip(a["function_gap"], ("#2471a3", "#c0392b"), strict=True))
    series = [(f"t = {t}", v, colors[t]) for t, v in a["function_gap"].items()]
    loglog_fits(ax[0], p.depths, series, guide=(-1.0, "slope -1"))
    for t, e in a["reference_error"].items():
        ax[0].axhline(e, color=colors[t], ls=":", lw=1)
    ax[0].set(xlabel="depth L (log)", ylabel="||f_L - f_ref||_L2 (log)")
    ax[0].set_title(f"(a) ||f_L - f_ref|| = O(1/L), f_ref: {p.reference} (dotted: its error)")
    names = [f"depth_L{L}" for L in p.depths] + [a["reference_run"]]
    shades = plt.cm.viridis(np.linspace(0.1, 0.85, len(names)))
    for name, c in zip(names, shades, strict=True):
        t, norm, loss = stats["_curves"][name]
        label = name.removeprefix("depth_").replace("reference_", "ref. ")
        label = f"ODE, L_ref = {p.reference_depth}" if name == "reference" else label
        ax[1].plot(t, norm, color=c, label=label)
        ax[2].semilogy(t, loss, color=c, label=label)
    ax[1].set(xlabel="training time t", ylabel="flow norm exp(int (E_rho_s |theta|^2)^(1/2) ds)")
    ax[1].set_title("flow norm along training")
    ax[2].set(xlabel="training time t", ylabel="training risk (log)")
    ax[2].set_title("risk: the same time T at every L")
    for axis in ax[1:]:
        axis.legend(fontsize=7)
    fig.suptitle("wide-ResNet to its continuous-depth ODE: O(1/L) at t = 0 and after training")
    out.append(save_figure(fig, s.figure_path("depth.png")))
    if "missing_times" in b:
        return out
    fig, ax = plt.subplots(1, 3, figsize=(16, 5.1), layout="constrained")
    times = [f"{t:g}" for t in p.times]
    shades = plt.cm.viridis(np.linspace(0.1, 0.85, len(times) + 1))
    tint = dict(zip(["0", *times], shades, strict=True))
    st = b["statistics"]
    series = [(f"t = {t}", st["coupling"][t], tint[t]) for t in times]
    loglog_fits(ax[0], p.widths, series, guide=(-1.0, "slope -1"))
    for t in times:
        ax[0].axhline(b["reference_error"][t], color=tint[t], ls=":", lw=1)
    series = [(f"t = {t}", st["function"][t], tint[t]) for t in ["0", *times]]
    loglog_fits(ax[1], p.widths, series, guide=(-0.5, "slope -1/2"))
    series = [(f"another replica's units, t = {t}", st["unpaired"][t], tint[t]) for t in times]
    series += [(f"twins, t = {times[-1]}", st["coupling"][times[-1]], "#c0392b")]
    loglog_fits(ax[2], p.widths, series)
    unit = "units per block N (log)"
    ax[0].set(xlabel=unit, ylabel="coupling distance C(N, t) (log)")
    ax[0].set_title(f"(b) L = {b['L']}, M = {b['M']}: C = O(1/N) (dotted: e_M)")
    ax[1].set(xlabel=unit, ylabel="||f_N(t) - f_M(t)||_L2 (log)")
    ax[1].set_title("function distance O(N^-1/2)")
    ax[2].set(xlabel=unit, ylabel="mean squared distance (log)")
    ax[2].set_title("control: unpaired units do not converge")
    fig.suptitle(
        "wide-ResNet at fixed depth: width coupling O(1/N), function distance O(N^-1/2); "
        "unpaired units do not converge"
    )
    out.append(save_figure(fig, s.figure_path("width.png")))
    return out


RESNET_DEPTH_LIMIT = Experiment(
    name="resnet_depth_limit",
    summary="wide-ResNet: ||f_L - f_ODE|| = O(1/L) before and after training; at fixed "
    "depth, width coupling O(1/N) and function distance O(N^-1/2)",
    claim=CLAIM,
    params=DepthLimitParams,
    quick=(
        "experiment.params.depths=[8, 16, 32]",
        # the ODE reference compiles for ~40 s of CPU; the quick run uses the Richardson one
        "experiment.params.reference=richardson",
        "experiment.params.reference_depth=32",  # f_ref = 2 f_64 - f_32
        "experiment.params.widths=[8, 16, 32]",
        "experiment.params.times=[4.0]",  # one compiled chunk
        "model.width=2048",
        "data.n_train=64",
        "data.n_test=128",
        "dynamics.dt=0.2",
        "dynamics.steps=20",
    ),
    checks=(
        CheckSpec(
            "depth_slope_t*", "|slope of log ||f_L - f_ref|| vs log L + 1| <= depth_tolerance"
        ),
        CheckSpec(
            "depth_reference_t*",
            "||f_ref - (2 f_Lmax - f_Lmax/2)|| / ||f_Lmax - f_ref|| <= reference_share",
        ),
        CheckSpec("depth_training", "L_ref(T) / L_ref(0) <= loss_drop"),
        CheckSpec(
            "width_coupling_slope_t*", "|slope of log C(N, t) vs log N + 1| <= slope_tolerance"
        ),
        CheckSpec(
            "width_function_slope_t*", "|slope of log F(N, t) vs log N + 1/2| <= slope_tolerance"
        ),
        CheckSpec("width_reference_t*", "e_M(t) / C(N_max, t) <= reference_share"),
        CheckSpec(
            "width_unpaired_slope_t*",
            "slope of the unpaired distance vs log N >= -1/2 + pairing_margin",
        ),
        CheckSpec(
            "width_run_completed", "reported only when the width run misses a statistic time"
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
