"""`multilayer_chaos`: propagation of chaos (sub-network coupling, per layer) and lazy against
rich training (movement per layer) for the three-layer (H = 2 hidden layers) mean-field
network."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge
from pydantic import Field, PositiveFloat

from ..config import Config, LawSpec, validate
from ..rundir import list_snapshots
from ..stats import loglog_fit
from ..study import Call, CheckSpec, Experiment, Params, Run, Study, check
from .common import Increasing, filter_jit, require

CLAIM = """\
Propagation of chaos for the three-layer mean-field network (Nguyen and Pham 2020, "A rigorous
framework for the mean field limit of multilayer neural networks": a width-N network and its
mean field limit, both indexed by one neuronal embedding, stay O(N^-1/2) apart on [0, T] up
to logarithmic factors;
Araujo, Oliveira and Yukimura 2019, "A mean-field limit for certain deep neural networks";
Sirignano and Spiliopoulos 2020, "Mean field analysis of deep neural networks"), and lazy
against rich training layer by layer (Chizat, Oyallon and Bach 2019, "On lazy training in
differentiable programming"; Jacot, Gabriel and Hongler 2018).

Network (`mfnn.models.Multilayer`, H = 2, no biases): h_1 = W_1 x, h_2 = (1/N) W_2^T tanh(h_1),
f = (1/N) a . tanh(h_2), every weight O(1), flow dW_1/dt = -N dE/dW_1, dW_2/dt = -N^2 dE/dW_2,
da/dt = -N dE/da (ntk: 1/sqrt(N) and unit factors). Initial weights i.i.d.: W_1 ~ N(0.5, I_3),
W_2 ~ N(1, 1), a ~ N(0, 1). With i.i.d. weights the limit's second-layer pre-activation at
t = 0 is the same for every unit, h_2(x) = E[W_2] E[tanh(W_1 . x)]: it vanishes when the
middle weights have mean 0, and also when the law of W_1 is symmetric (tanh is odd); the
means 1 and 0.5 make it a non-zero function. Data: a fixed training set (64 inputs
x ~ N(0, I_3), y from a random width-4 mean-field teacher, entries N(0, 2^2)) and 256 test
inputs, written once and read by every sub-run of both scalings.

Claim 1 (coupling). The middle weights W_2[j, k] couple pairs of units, so the rows of one
network are not exchangeable particles of one measure: the coupling is by sub-networks. A
reference network of M = model.width units per layer stands in for the limit. A student of
width N starts from the reference's initial weights on a random subset S of N of its units
(W_1[S], W_2[S, S], a[S]: the same true weights, averaged with 1/N instead of 1/M;
`unit_subsets`), `replicas` students per width; all train by the same discrete flow (Euler),
and each weight of a student is compared with its twin in the reference at each t in `times`:
    C_1 = mean |W_1[j] - W~_1[j]|^2,  C_2 = mean |W_2[j, k] - W~_2[j, k]|^2,
    C_a = mean |a_j - a~_j|^2        (means over units, pairs of units and students),
    F = sqrt(mean over students of ||f_N - f_M||^2 on the test inputs).
Every velocity depends on the network through averages over units, which differ from the
reference's by O(N^-1/2) (less the reference's own O(M^-1/2)), so each layer has C = O(1/N -
1/M) (slope -1 against N) and F = O(N^-1/2) (slope -1/2; at t = 0 too, where C = 0). e_M(t),
the coupling of one student of width M/2, is the reference's own squared error
(sigma^2 (2/M - 1/M) = sigma^2 / M); share(t) = e_M / C(N_max) (summed over the layers) bends
the slopes by at most log(1 + share) / log(N_max / N_min). L_M(T) / L_M(0) places T past the
kernel phase.

Claim 2 (movement per layer). The students' relative movement |P(T) - P(0)|_F / |P(0)|_F of
each weight block P (W_1, W_2, a; `Multilayer.layer_movement`), mean over students, against
N: under mean_field every weight moves O(1) in O(1) time (slope 0 in every layer: features
are learned in every layer). Under ntk (students on the same units of the same draws, W_2
centred: its mean would make h_2 grow like sqrt(N)) each entry of W_1 and a moves O(N^-1/2)
(slopes -1/2), and each entry of W_2 only O(1/N): Delta W_2 is a sum over the inputs of
rank-one terms of Frobenius norm O(1) while |W_2(0)|_F = O(N), so the Frobenius movement of
W_2 has slope -1, and its operator-norm movement |Delta W_2|_op / |W_2(0)|_op
(|W_2(0)|_op = O(sqrt(N))) slope -1/2 (`w2_op`). L(T) / L(0) in both scalings at every width
(f moved O(1) by T: the premise).
"""

LAYERS = ("w1", "w2", "a")  # the coupled weight blocks of H = 2
MOVES = ("w1", "w2", "w2_op", "a")  # the movements: w2 in Frobenius and in operator norm
SCALINGS = ("mean_field", "ntk")
PREDICTED = {
    "mean_field": {"w1": 0.0, "w2": 0.0, "w2_op": 0.0, "a": 0.0},
    "ntk": {"w1": -0.5, "w2": -1.0, "w2_op": -0.5, "a": -0.5},
}
Widths = Annotated[tuple[Annotated[int, Ge(2)], ...], Increasing]
Times = Annotated[tuple[PositiveFloat, ...], Increasing]


class MultilayerChaosParams(Params):
    widths: Widths = Field((16, 32, 64, 128), min_length=3, description="N, the student widths")
    replicas: int = Field(256, ge=2, description="students per width and scaling")
    times: Times = Field(
        (5.0, 10.0), min_length=1, description="statistic times; the last is T = steps * dt"
    )
    slope_tolerance: float = Field(0.15, gt=0, lt=1, description="|slope - claim| <= this")
    reference_share: float = Field(0.2, gt=0, le=1, description="e_M / C(N_max, t) <= this")
    movement_tolerance: float = Field(0.15, gt=0, description="|movement slope - pred| <= this")
    loss_ratio: float = Field(0.5, gt=0, le=1, description="L(T) / L(0) <= this, every network")

    def check_config(self, cfg: Config) -> None:
        model, dyn, data, every = cfg.model, cfg.dynamics, cfg.data, cfg.record.every
        M, n_max = model.width or 0, self.widths[-1]
        k = [t / dyn.dt for t in self.times]
        grid = all(abs(v - round(v)) <= 1e-9 * v and round(v) % every == 0 for v in k)
        flows = (dyn.kind, dyn.langevin, dyn.birth_death) == ("gradient_flow", None, None)
        sampled = data.population is None and data.path is None and data.test_path is None
        require(
            "multilayer_chaos",
            ("model.kind`, `model.depth", "multilayer, 2 (a three-layer network)",
             model.kind == "multilayer" and (model.depth or 2) == 2, (model.kind, model.depth)),
            ("model.scaling", "mean_field (the reference; the ntk students are derived)",
             model.scaling == "mean_field", model.scaling),
            ("model.init.path", "unset (the reference is drawn from `model.init`)",
             model.init.path is None, model.init.path),
            ("model.width", f"even and >= 4 * {n_max} (the reference M >> N)",
             M % 2 == 0 and M >= 4 * n_max, M),
            ("experiment.params.times", f"multiples of dynamics.dt * record.every = "
             f"{dyn.dt * every:g}, the last = dynamics.steps * dynamics.dt = "
             f"{dyn.steps * dyn.dt:g}", grid and round(k[-1]) == dyn.steps, self.times),
            ("dynamics.kind`, `dynamics.langevin`, `dynamics.birth_death",
             "gradient_flow, unset, unset (deterministic flows)", flows, dyn.kind),
            ("objective.l2", "0 (the risk's flow)", cfg.objective.l2 == 0, cfg.objective.l2),
            ("data.target`, `data.population`, `data.path`, `data.test_path",
             "teacher or sign, unset, unset, unset (the plan writes the data files)",
             sampled and data.target in ("teacher", "sign"), data.target),
            ("data.n_test", ">= 1 (F is an L2 norm on the test inputs)", data.n_test >= 1,
             data.n_test),
        )  # fmt: skip


def law_mean(spec: LawSpec | None) -> float:
    """The mean of one coordinate of a `model.init` law (0 when unset)."""
    if spec is None:
        return 0.0
    return {"gaussian": spec.mean, "uniform": 0.5 * (spec.low + spec.high)}.get(
        spec.law, spec.value
    )


def write_inputs(s: Study[MultilayerChaosParams]) -> dict[str, Any]:
    """The input files of the plan: the reference's initial weights (``w1`` (M, d), ``w2``
    (M, M), ``a`` (M,), true weights, drawn from `model.init` as `mfnn.build.build` draws
    them) and the training and test sets (the config's teacher, as a plain run samples
    them). Every sub-run reads these files, so both scalings learn the same data. Returns
    their paths and the initial weights."""
    from ..build import build

    b = build(s.sub_config("draw"))
    init = b.model.particle_arrays(b.theta0)
    train, test = b.train, b.test
    return {
        "init": str(s.input_file("reference", **init)),
        "train": str(s.input_file("train", x=np.asarray(train.x), y=np.asarray(train.y))),
        "test": str(s.input_file("test", x=np.asarray(test.x), y=np.asarray(test.y))),
        "arrays": init,
    }


def plan(s: Study[MultilayerChaosParams]) -> dict[str, Run | Call]:
    """The reference (a `Run` from the drawn weights, snapshots at the statistic times), then
    for each scaling and width N a `Call` of `students` (`replicas` students; its config
    starts from the first student's weights, inputs/<scaling>_n<N>-*.npz), and the half
    reference (one student of width M/2)."""
    p, cfg = s.params, s.config
    M, dt = cfg.model.width, cfg.dynamics.dt
    files = write_inputs(s)
    steps = [round(t / dt) for t in p.times]
    data = {"data.path": files["train"], "data.test_path": files["test"]}
    data |= {"data.target": None, "data.teacher": None}
    ref_cfg = s.sub_config(
        "reference",
        data | {"model.init.path": files["init"], "record.snapshot_every": math.gcd(*steps)},
    )
    items: dict[str, Run | Call] = {"reference": Run(ref_cfg, figures=False)}
    ref_dir = str((s.out / "runs" / "reference").resolve())
    hidden = law_mean(cfg.model.init.hidden or cfg.model.init.w)
    jobs = [(sc, n, p.replicas) for sc in SCALINGS for n in p.widths]
    for sc, n, reps in [*jobs, ("mean_field", M // 2, 1)]:
        name = "half_reference" if n == M // 2 else f"{sc}_n{n}"
        centre = hidden if sc == "ntk" else 0.0
        units = unit_subsets(cfg.seed, M, n, 1)
        first = {k: v[0] for k, v in blocks_of(files["arrays"], units, centre).items()}
        start = str(s.input_file(name, **first))
        change = data | {"model.width": n, "model.scaling": sc, "model.init.path": start}
        inputs = {
            "config": s.sub_config(name, change).model_dump(mode="json"),
            "reference": files["init"],
            "replicas": reps,
            "centre": centre,
            "steps": steps,
            "reference_run": ref_dir if sc == "mean_field" else None,
            "movement": name != "half_reference",
        }
        items[name] = Call(students, inputs)
    return items


def unit_subsets(seed: int, M: int, n: int, replicas: int) -> np.ndarray:
    """The units (replicas, n) of each student: random subsets of n of the reference's M
    units, without replacement, in increasing order (numpy's generator seeded with (seed,
    M, n)). The weights on a subset are i.i.d. draws of the initial law (a student of
    width n); two subsets share n^2 / M units on average, which cancels on average the
    shared reference in the covariance of their deviations, (1/n) sum_S - (1/M) sum_all.

    Example:
        >>> u = unit_subsets(0, 10, 4, 3)
        >>> u.shape, bool(np.all(np.diff(u, axis=1) > 0)), bool(u.max() < 10)
        ((3, 4), True, True)
        >>> bool(np.array_equal(unit_subsets(0, 10, 4, 2), u[:2]))  # nested in `replicas`
        True
    """
    rng = np.random.default_rng([seed, M, n])
    return np.stack([np.sort(rng.choice(M, n, replace=False)) for _ in range(replicas)])


def blocks_of(z: dict[str, np.ndarray], units: np.ndarray, centre: float = 0.0) -> dict:
    """The weights of the sub-networks on ``units`` (R, N) of the full weights ``z``
    (``w1`` (M, d), ``w2`` (M, M), ``a`` (M,)): ``w1`` (R, N, d), ``w2`` (R, N, N) (the
    blocks W_2[S_r, S_r], minus ``centre``) and ``a`` (R, N).

    Example:
        >>> z = {"w1": np.arange(4.0)[:, None], "w2": np.arange(16.0).reshape(4, 4),
        ...      "a": np.arange(4.0)}
        >>> b = blocks_of(z, np.array([[0, 1], [1, 3]]), centre=1.0)
        >>> b["w1"][1, :, 0].tolist(), b["w2"][1].tolist(), b["a"][0].tolist()
        ([1.0, 3.0], [[4.0, 6.0], [12.0, 14.0]], [0.0, 1.0])
    """
    u = np.asarray(units)
    return {
        "w1": z["w1"][u],
        "w2": z["w2"][u[:, :, None], u[:, None, :]] - centre,
        "a": z["a"][u],
    }


def layer_coupling(x: dict, y: dict) -> dict[str, np.ndarray]:
    """Per block r: the mean squared difference of each layer's weights (``w1``: the mean
    over units of |W_1[j] - W~_1[j]|^2; ``w2``: the mean over pairs (j, k); ``a``: over
    units), for weights as `blocks_of` returns them.

    Example:
        >>> x = {"w1": np.zeros((1, 2, 1)), "w2": np.zeros((1, 2, 2)), "a": np.zeros((1, 2))}
        >>> y = {"w1": np.ones((1, 2, 1)), "w2": np.full((1, 2, 2), 2.0), "a": x["a"]}
        >>> {k: v.tolist() for k, v in layer_coupling(x, y).items()}
        {'w1': [1.0], 'w2': [4.0], 'a': [0.0]}
    """
    return {
        "w1": np.mean(np.sum((x["w1"] - y["w1"]) ** 2, axis=-1), axis=-1),
        "w2": np.mean((x["w2"] - y["w2"]) ** 2, axis=(-2, -1)),
        "a": np.mean((x["a"] - y["a"]) ** 2, axis=-1),
    }


@filter_jit
def _advance(dynamics, integrator, theta, start, stop, dt, key):
    """Steps start .. stop - 1 of the integrator from the rows ``theta`` (R, N, D) of R
    students, vmapped over them."""
    import jax

    model = dynamics.model

    def body(k, b):
        return jax.vmap(lambda one: integrator.step(dynamics, one, k, dt, key)[0])(b)

    blocks = jax.lax.fori_loop(start, stop, body, jax.vmap(model.to_blocks)(theta))
    return jax.vmap(model.from_blocks)(blocks)


@filter_jit
def _measures(dynamics, theta, theta0, x_test, x, y):
    """f on the test inputs, the training risk and the layer movements of R students."""
    import jax

    model = dynamics.model
    f = jax.vmap(lambda t: model.predict(t, x_test))(theta)
    risk = jax.vmap(lambda t: dynamics.risk(t, x, y))(theta)
    return f, risk, jax.vmap(model.layer_movement)(theta, theta0)


@filter_jit
def _predict(model, theta, x):
    return model.predict(theta, x)


def students(
    config: dict,
    reference: str,
    replicas: int,
    centre: float,
    steps: list[int],
    reference_run: str | None = None,
    movement: bool = True,
) -> dict[str, Any]:
    """Train ``replicas`` students of width N = ``config``'s `model.width` (a `Call`).

    Student r starts from the weights on the units ``unit_subsets(seed, M, N, replicas)[r]``
    of the reference's initial weights in the file ``reference`` (`blocks_of`; ``seed``:
    ``config``'s; ``centre`` is subtracted from W_2: the ntk
    students' centred middle weights; student 0 is ``config``'s `model.init.path`) and moves
    by ``config``'s flow and integrator, all students at once (vmapped). At step 0 and each
    of ``steps`` (the last is T), with ``reference_run`` (a run directory whose snapshots
    hold the reference at those steps): the `layer_coupling` of each student to its twin
    units in the reference and its squared L2 distance to f_M on the test inputs.

    Returns (lists over students): ``coupling`` {step: {layer: [...]}} and ``function``
    {step: [...]} (steps the reference lacks are left out), ``loss_initial`` and
    ``loss_final`` (the training risk), and with ``movement`` the relative movement at T of
    W_1, W_2 (Frobenius and operator norm, ``w2_op``) and a.
    """
    import jax.numpy as jnp

    from ..build import build, make_model
    from ..measure import read_npz

    cfg = validate(config)
    b = build(cfg)
    model, n, dtype = b.model, cfg.model.width, b.theta0.dtype
    init = read_npz(reference, "reference", "particle file")
    units = unit_subsets(cfg.seed, init["w1"].shape[0], n, replicas)
    z = blocks_of(init, units, centre)
    theta0 = np.stack(
        [
            np.asarray(model.from_arrays({k: v[r] for k, v in z.items()}, reference, dtype))
            for r in range(replicas)
        ]
    )
    theta0 = jnp.asarray(theta0)
    if not np.array_equal(np.asarray(theta0[0]), np.asarray(b.theta0)):
        raise ValueError(f"the config's start is not block 0 of {reference!r}.")
    snaps = list_snapshots(reference_run) if reference_run is not None else {}
    ref_model = make_model(cfg, model.d, width=init["w1"].shape[0])
    x_test, x, y = b.test.x, b.train.x, b.train.y
    out: dict[str, Any] = {"width": n, "replicas": replicas, "coupling": {}, "function": {}}
    theta, at = theta0, 0
    for k in [0, *steps]:
        theta = _advance(
            b.dynamics, b.integrator, theta, jnp.asarray(at), jnp.asarray(k), b.dt, b.key
        )
        at = k
        if k not in snaps:
            continue
        ref = read_npz(snaps[k], "snapshot", "snapshot")
        coupled = layer_coupling(model_arrays(model, theta), blocks_of(ref, units))
        out["coupling"][str(k)] = {key: v.tolist() for key, v in coupled.items()}
        rows = ref_model.from_arrays(ref, str(snaps[k]), dtype)
        f_ref = np.asarray(_predict(ref_model, rows, x_test))
        f = np.asarray(_measures(b.dynamics, theta, theta0, x_test, x, y)[0])
        out["function"][str(k)] = np.mean((f - f_ref) ** 2, axis=-1).tolist()
    _, risk0, _ = _measures(b.dynamics, theta0, theta0, x_test, x, y)
    _, risk, moved = _measures(b.dynamics, theta, theta0, x_test, x, y)
    out["loss_initial"] = np.asarray(risk0).tolist()
    out["loss_final"] = np.asarray(risk).tolist()
    if movement:
        out["movement"] = {key: np.asarray(v).tolist() for key, v in moved.items()}
        w0, w2 = z["w2"], model_arrays(model, theta)["w2"]
        op = np.linalg.norm(w2 - w0, 2, axis=(-2, -1)) / np.linalg.norm(w0, 2, axis=(-2, -1))
        out["movement"]["w2_op"] = op.tolist()
    return out


def model_arrays(model, theta) -> dict[str, np.ndarray]:
    """The true weights of R students (rows (R, N, D), the layout of `Multilayer`: W_1[j],
    U_2[j, :] = W_2[j, :] / c, a_j with c = sqrt(N) in mean_field, 1 in ntk) with a leading
    student axis, as `Multilayer.particle_arrays` gives them for each student."""
    theta = np.asarray(theta)
    d, n = model.d, model.units
    c = math.sqrt(n) if model.scaling.mean_field else 1.0
    out = {"w1": theta[..., :d], "w2": c * theta[..., d : d + n], "a": theta[..., d + n]}
    first = model.particle_arrays(theta[0])
    if any(not np.allclose(first[k], out[k][0], rtol=1e-14, atol=0) for k in LAYERS):
        raise ValueError("the row layout of `Multilayer` changed; update `model_arrays`.")
    return out


def analyze(s: Study[MultilayerChaosParams], runs) -> dict[str, Any]:
    """C_layer(N, t) (means over students, with their relative standard errors), F(N, t),
    e_M(t) and its share, the log-log slopes against N; the movement of each layer per
    scaling and its slope; L(T) / L(0) of the reference and of the students."""
    p, cfg, ref = s.params, s.config, runs["reference"]
    dt, M, widths = cfg.dynamics.dt, cfg.model.width, list(p.widths)
    want = {0.0: 0, **{t: round(t / dt) for t in p.times}}
    missing = [t for t, k in want.items() if k not in set(ref.snapshot_steps())]
    if ref.status != "completed" or missing:  # a diverged (or cut) reference: say so
        return {"missing_times": missing, "message": ref.summary.get("message")}
    mf = {n: runs[f"mean_field_n{n}"].value for n in widths}
    half = runs["half_reference"].value
    stats: dict[str, Any] = {"M": M, "widths": widths, "times": list(want)}
    stats["replicas"] = [mf[n]["replicas"] for n in widths]
    coupling, rse, function, share, e_m = {}, {}, {}, {}, {}
    for t, k in want.items():
        key, label = str(k), f"{t:g}"
        function[label] = [math.sqrt(np.mean(mf[n]["function"][key])) for n in widths]
        if k == 0:
            continue
        coupling[label] = {
            layer: [float(np.mean(mf[n]["coupling"][key][layer])) for n in widths]
            for layer in LAYERS
        }
        rse[label] = {
            layer: [_rse(mf[n]["coupling"][key][layer]) for n in widths] for layer in LAYERS
        }
        e_m[label] = {layer: float(np.mean(half["coupling"][key][layer])) for layer in LAYERS}
        total = sum(coupling[label][layer][-1] for layer in LAYERS)
        share[label] = sum(e_m[label].values()) / total if total > 0 else math.nan
    stats["coupling"], stats["coupling_rse"], stats["function"] = coupling, rse, function
    stats["reference_error"], stats["reference_share"] = e_m, share
    stats["coupling_slopes"] = {
        t: {layer: loglog_fit(widths, v[layer]).slope for layer in LAYERS}
        for t, v in coupling.items()
    }
    stats["coupling_slope_ci95"] = {
        t: {layer: list(loglog_fit(widths, v[layer]).ci) for layer in LAYERS}
        for t, v in coupling.items()
    }
    stats["function_slopes"] = {t: loglog_fit(widths, v).slope for t, v in function.items()}
    mt = ref.metrics
    stats["reference_loss_ratio"] = float(mt["loss"][-1] / mt["loss"][0])
    stats["final_loss"] = float(mt["loss"][-1])
    movement, loss_ratio = {}, {}
    for sc in SCALINGS:
        vals = [runs[f"{sc}_n{n}"].value for n in widths]
        movement[sc] = {
            layer: {
                "mean": [float(np.mean(v["movement"][layer])) for v in vals],
                "predicted": PREDICTED[sc][layer],
            }
            for layer in MOVES
        }
        for d in movement[sc].values():
            fit = loglog_fit(widths, d["mean"])
            d |= {"slope": fit.slope, "slope_ci95": list(fit.ci)}
        loss_ratio[sc] = [
            float(np.mean(v["loss_final"]) / np.mean(v["loss_initial"])) for v in vals
        ]
    stats["movement"], stats["loss_ratio"] = movement, loss_ratio
    return stats


def _rse(values) -> float:
    """The relative standard error of a mean: std / (mean sqrt(R)) (nan when it is 0)."""
    v = np.asarray(values, float)
    m = v.mean()
    return float(v.std(ddof=1) / m / math.sqrt(v.size)) if m > 0 and v.size > 1 else math.nan


def evaluate(s: Study[MultilayerChaosParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    if "missing_times" in stats:
        missing = f"missing t = {stats['missing_times']}: {stats.get('message')}"
        return {
            "run_completed": check(False, f"the reference reaches every time ({missing})", False)
        }
    p, checks = s.params, {}
    tol, mtol, share, ratio = (
        p.slope_tolerance,
        p.movement_tolerance,
        p.reference_share,
        p.loss_ratio,
    )
    for t, slopes in stats["coupling_slopes"].items():
        for layer in LAYERS:
            v = slopes[layer]
            rule = f"|slope of log C_{layer}(N, t={t}) vs log N - (-1)| <= {tol:g}"
            checks[f"coupling_slope_{layer}_t{t}"] = check(v, rule, abs(v + 1.0) <= tol)
        v = stats["reference_share"][t]
        rule = f"e_M / C(N_max, t={t}) <= {share:g} (the reference's own error is small)"
        checks[f"reference_error_t{t}"] = check(v, rule, v <= share)
    for t, v in stats["function_slopes"].items():
        rule = f"|slope of log F(N, t={t}) vs log N - (-0.5)| <= {tol:g}"
        checks[f"function_slope_t{t}"] = check(v, rule, abs(v + 0.5) <= tol)
    v = stats["reference_loss_ratio"]
    rule = f"L_M(T) / L_M(0) <= {ratio:g} (T is in the nonlinear regime)"
    checks["nonlinear_regime"] = check(v, rule, v <= ratio)
    for sc, layers in stats["movement"].items():
        for layer, d in layers.items():
            slope, pred = d["slope"], d["predicted"]
            rule = f"|slope of mean movement of {layer} vs log N - ({pred:g})| <= {mtol:g}"
            checks[f"movement_slope_{sc}_{layer}"] = check(slope, rule, abs(slope - pred) <= mtol)
        v = max(stats["loss_ratio"][sc])
        rule = f"max over N of L(T) / L(0) <= {ratio:g} (f moved O(1))"
        checks[f"function_moves_{sc}"] = check(v, rule, v <= ratio)
    mv = stats["movement"]
    order = {layer: [mv[sc][layer]["mean"][-1] for sc in SCALINGS] for layer in MOVES}
    rule = f"at N = {stats['widths'][-1]}: movement ntk < mean_field in every layer"
    ok = all(m > n for m, n in order.values())
    checks["ordering_at_largest_width"] = check(order, rule, ok)
    return checks


def figures(s: Study[MultilayerChaosParams], stats: dict[str, Any], runs) -> list:
    """claims.png: the coupling of each layer at T (dotted: e_M) and F at each t against N
    (claim 1); the relative movement of each layer against N under mean_field and under ntk,
    with fits and the predicted slopes (claim 2)."""
    from ..plots import loglog_fits, plt, save_figure, width_axis

    if "missing_times" in stats:
        return []
    widths, function = stats["widths"], stats["function"]
    T = list(stats["coupling"])[-1]
    layer_colors = {"w1": "#2471a3", "w2": "#c0392b", "w2_op": "#e59866", "a": "#27ae60"}
    fig, ax = plt.subplots(1, 4, figsize=(20, 5.0), layout="constrained")
    series = [(f"C_{k}", stats["coupling"][T][k], layer_colors[k]) for k in LAYERS]
    loglog_fits(ax[0], widths, series, guide=(-1.0, "slope -1"))
    for k in LAYERS:
        ax[0].axhline(stats["reference_error"][T][k], color=layer_colors[k], ls=":", lw=1)
    ax[0].set(xlabel="width N", ylabel=f"coupling C(N, t={T}) (log)",
              title="coupling per layer at T (dotted: e_M)")  # fmt: skip
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(function)))
    series = [(f"t = {t}", v, c) for (t, v), c in zip(function.items(), colors, strict=True)]
    loglog_fits(ax[1], widths, series, guide=(-0.5, "slope -1/2"))
    ax[1].set(xlabel="width N", ylabel="||f_N(t) - f_M(t)||_L2 (log)", title="function distance")
    for i, sc in enumerate(SCALINGS):
        mv = stats["movement"][sc]
        series = [(k, mv[k]["mean"], layer_colors[k]) for k in MOVES]
        loglog_fits(ax[2 + i], widths, series)
        for k in MOVES:  # the predicted slopes, through each layer's first point
            pred, y0 = mv[k]["predicted"], mv[k]["mean"][0]
            guide = [y0 * (n / widths[0]) ** pred for n in widths]
            ax[2 + i].loglog(widths, guide, color=layer_colors[k], lw=2.5, alpha=0.25)
        width_axis(ax[2 + i], widths)
        ax[2 + i].set(xlabel="width N", ylabel="relative movement at T (log)",
                      title=f"{sc} (wide pale lines: predicted slopes)")  # fmt: skip
    fig.suptitle(
        "three-layer mean field: coupling O(1/N) per layer, function distance O(N^-1/2); "
        "movement slope 0 per layer under mean_field (rich), < 0 under ntk (lazy)"
    )
    return [save_figure(fig, s.figure_path("claims.png"))]


MULTILAYER_CHAOS = Experiment(
    name="multilayer_chaos",
    summary="three-layer mean field: sub-network coupling O(1/N) per layer, function "
    "distance O(N^-1/2); per-layer movement rich (0) under mean_field, lazy under ntk",
    claim=CLAIM,
    params=MultilayerChaosParams,
    quick=(
        "model.width=1024",
        "experiment.params.widths=[16, 32, 64]",
    ),
    checks=(
        CheckSpec(
            "coupling_slope_*_t*", "|slope of log C_layer(N, t) vs log N + 1| <= slope_tolerance"
        ),
        CheckSpec("function_slope_t*", "|slope of log F(N, t) vs log N + 1/2| <= slope_tolerance"),
        CheckSpec("reference_error_t*", "share(t) = e_M(t) / C(N_max, t) <= reference_share"),
        CheckSpec("nonlinear_regime", "L_M(T) / L_M(0) <= loss_ratio"),
        CheckSpec(
            "movement_slope_*",
            "|slope of mean movement of a layer vs N - predicted| <= movement_tolerance",
        ),
        CheckSpec("function_moves_*", "max over N of L(T) / L(0) <= loss_ratio"),
        CheckSpec("ordering_at_largest_width", "movement ntk < mean_field in every layer at N_max"),
        CheckSpec("run_completed", "reported only when the reference misses a statistic time"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
