"""`barron_rate`: N neurons sampled from a measure that represents a Barron function f give
||f - f_N||^2 <= 3 ||f||_B^2 / N; trained width-N networks reach that rate too."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from ..stats import loglog_fit
from ..study import Call, CheckSpec, Experiment, Params, Run, Study, check
from .common import Increasing, require

if TYPE_CHECKING:
    from ..diagnostics.barron import GaussianMixtureMeasure


CLAIM = """\
Barron's theorem (Barron 1993; E, Ma and Wu 2019, "Barron spaces and the compositional
function spaces for neural network models", Theorem 4; H. Yang, "Mean-field analysis of
neural networks", Theorems 2.1-2.2): for a Barron function f and any N, some two-layer ReLU
network f_N with N neurons has ||f - f_N||^2_{L2(mu)} <= 3 ||f||_B^2 / N for every probability
measure mu on the box [-1, 1]^d. The proof samples the N neurons i.i.d. from a measure pi that
represents f = E_pi[a relu(w . x + b)]: E ||f - f_N||^2 = V_mu(pi) / N <= B2(pi)^2 / N <=
3 P(pi)^2 / N, with the path norm P(pi) >= ||f||_B (formulas in `mfnn.diagnostics.barron`).

Sampling: pi is a mixture of Gaussians over (w, b), one output weight a component (measure),
so f, V_mu(pi), P(pi) and B2(pi) are closed forms; mu = eval_points inputs uniform in the box,
`seeds` draws of f_N for each N in widths. A control: sample_std_factor != 1 draws from a
measure that does not represent f; its error stops at a bias floor (bound, slope and
expected_error fail).

Training: global convergence (Chizat and Bach 2018; Mei, Montanari and Nguyen 2018) is about
infinite width, so whether gradient descent finds width-N networks as good as the sampled
ones is measured: for N in train_widths a mean_field ReLU network (a_0 ~ N(0, 0.1^2), near
f = 0) is trained by full-batch gradient descent on y = f(x) at data.n_train inputs uniform in
the box; its error err = 2 R (R: the recorded risk) is compared with V_mu(pi) / N on the
training and the test inputs. Reported: the trained errors' log-log slope against N, and each
network's path norm at every snapshot against P(pi) (not checked: nothing bounds it by P(pi)).
"""

DEFAULT_MEASURE = (
    {"weight": 0.6, "a": 2.0, "mean": (1.0, 0.0, 0.0, 0.0, 0.25), "std": 0.5},
    {"weight": 0.4, "a": -1.5, "mean": (0.0, -1.0, 0.5, 0.0, 0.0), "std": 0.75},
)


def sampling_study(
    measure, low: float, high: float, dim: int, eval_points: int, widths, seeds: int,
    std_factor: float, seed: int,
) -> dict:  # fmt: skip
    """err[s][i] = ||f - f_N||^2_mu (N = widths[i], draw s), the draws' path norms, V_mu(pi)
    and ||f||^2_mu, mu = eval_points inputs uniform in [low, high]^dim (a `Call`)."""
    import jax

    from ..build import enable_dtype
    from ..diagnostics.barron import GaussianMixtureMeasure, sampled_error
    from ..diagnostics.norms import path_norm
    from ..models import TwoLayer

    enable_dtype("float64")
    pi, net = GaussianMixtureMeasure.of(measure), TwoLayer(dim, "relu", "mean_field", bias=True)
    norm = jax.jit(lambda a, w, b: path_norm(net, net.join(a, w, b)))  # one compile a width
    x = np.random.default_rng([seed, 0xE7]).uniform(low, high, (eval_points, dim))
    fx = pi.f(x)
    err, pnorm = np.empty((seeds, len(widths))), np.empty((seeds, len(widths)))
    for i, n in enumerate(widths):
        for s in range(seeds):
            a, w, b = pi.sample(np.random.default_rng([seed, 0xBA, n, s]), n, std_factor)
            err[s, i] = sampled_error(x, fx, a, w, b)
            pnorm[s, i] = float(norm(a, w, b))
    v, f_norm2 = pi.variance(x), float(np.mean(fx**2))
    return {"err": err.tolist(), "path_norm": pnorm.tolist(), "V": v, "f_norm2": f_norm2}


class Component(BaseModel):
    """One component p delta_a (x) N(mean, std^2 I) of pi."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(gt=0, description="p_k")
    a: float = Field(allow_inf_nan=False, description="the output weight a_k")
    mean: tuple[float, ...] = Field(description="mu_k: w (d numbers) then b")
    std: float = Field(gt=0, description="s_k")


Widths = Annotated[tuple[PositiveInt, ...], Increasing]


class BarronParams(Params):
    measure: tuple[Component, ...] = Field(
        DEFAULT_MEASURE, min_length=1, description="pi: components, weights summing to 1"
    )
    widths: Widths = Field(
        (10, 30, 100, 300, 1000, 3000, 10000), min_length=3, description="N of f_N; max >= 100 min"
    )
    seeds: int = Field(32, ge=2, description="independent draws of f_N per N")
    eval_points: int = Field(4096, ge=16, description="inputs of mu (uniform in the box)")
    bound_factor: float = Field(3.0, gt=0, description="the theorem's constant")
    slope_tolerance: float = Field(0.1, gt=0, description="|slope + 1| <= this")
    sample_std_factor: float = Field(1.0, gt=0, description="!= 1 scales the drawn stds: a control")
    train_widths: Widths = Field((16, 64, 256), description="trained widths (empty: no training)")

    def pi(self) -> GaussianMixtureMeasure:
        from ..diagnostics.barron import GaussianMixtureMeasure

        return GaussianMixtureMeasure.of(c.model_dump() for c in self.measure)

    def check_config(self, cfg) -> None:
        ms, data, d, w = cfg.model, cfg.data, cfg.data.inputs.dim, self.widths
        total, snap = sum(c.weight for c in self.measure), cfg.record.snapshot_every
        mean_rule = f"d + 1 = {d + 1} numbers (w then b; d = `data.inputs.dim`)"
        require(
            "barron_rate",
            ("experiment.params.measure", "weights summing to 1 (pi is a probability)",
             math.isclose(total, 1.0, abs_tol=1e-9), total),
            *((f"experiment.params.measure.{i}.mean", mean_rule, len(c.mean) == d + 1, c.mean)
              for i, c in enumerate(self.measure)),
            ("experiment.params.widths", "spanning max >= 100 min (the slope)",
             max(w) >= 100 * min(w), w),
            ("data.inputs.law", "uniform (a box)", data.inputs.law == "uniform", data.inputs.law),
            ("model.activation", "relu", ms.activation == "relu", ms.activation),
            ("model.bias", "true (units relu(w . x + b))", ms.bias, ms.bias),
            ("model.train_output", "true (units a relu(.))", ms.train_output, ms.train_output),
            ("model.scaling", "mean_field (f_N = mean)", ms.scaling == "mean_field", ms.scaling),
            ("model.init.path", "unset (drawn from the laws)", ms.init.path is None, ms.init.path),
            ("data.path", "unset (y = f(x) is made here)", data.path is None, data.path),
            ("data.population", "unset", data.population is None, data.population),
            ("record.snapshot_every", "set", bool(snap or not self.train_widths), snap),
        )  # fmt: skip


def plan(s: Study[BarronParams]) -> dict:
    p, cfg, inp = s.params, s.config, s.config.data.inputs
    sampling = {"measure": [c.model_dump() for c in p.measure], "widths": list(p.widths)}
    sampling |= {"eval_points": p.eval_points, "seeds": p.seeds, "std_factor": p.sample_std_factor}
    box = {"low": inp.low, "high": inp.high, "dim": inp.dim, "seed": cfg.seed}
    items: dict = {"sampling": Call(sampling_study, sampling | box)}
    if not p.train_widths:
        return items
    pi, rng = p.pi(), np.random.default_rng([cfg.seed, 0x7A])
    x = rng.uniform(inp.low, inp.high, (cfg.data.n_train, inp.dim))
    xt = rng.uniform(inp.low, inp.high, (max(cfg.data.n_test, 1), inp.dim))
    data = {  # the files are named by their content: another measure is another sub-run
        "data.path": str(s.input_file("train", x=x, y=pi.f(x))),
        "data.test_path": str(s.input_file("test", x=xt, y=pi.f(xt))),
        "data.target": None,
    }
    for n in p.train_widths:
        items[f"train_m{n}"] = Run(s.sub_config(f"train_m{n}", data | {"model.width": n}))
    return items


def analyze(s: Study[BarronParams], runs) -> dict:
    from ..diagnostics.barron import barron_rate
    from ..diagnostics.norms import path_norm

    p, pi, sv, inp = s.params, s.params.pi(), runs["sampling"].value, s.config.data.inputs
    err, ns, big_p = np.asarray(sv["err"]), np.asarray(p.widths, float), pi.path_norm()
    mean, se = err.mean(axis=0), err.std(axis=0, ddof=1) / math.sqrt(err.shape[0])
    stats = {
        "widths": list(p.widths),
        "mean_error": mean.tolist(),
        "se_error": se.tolist(),
        "expected_error": (sv["V"] / ns).tolist(),
        "bound": barron_rate(big_p, ns, p.bound_factor).tolist(),
        "slope": loglog_fit(ns, mean).slope,
        "V_pi": sv["V"],
        "f_norm2": sv["f_norm2"],
        "path_norm_pi": big_p,
        "B2_sq_pi": pi.b2_squared(),
        "slack_3P2_over_V": 3 * big_p**2 / sv["V"] if sv["V"] > 0 else float("inf"),
        "sampled_path_norm_mean": np.mean(sv["path_norm"], axis=0).tolist(),
        "input_sup_norm": max(abs(inp.low), abs(inp.high)),
        "_err": err,
    }
    trained = {}
    for n in p.train_widths:
        r = runs[f"train_m{n}"]
        mt, steps = r.metrics, r.snapshot_steps()
        norms = [float(path_norm(r.model, r.particles(k))) for k in steps]
        trained[f"m{n}"] = {
            "err_train_initial": float(2 * mt["loss"][0]),
            "err_train": float(2 * mt["loss"][-1]),
            "err_test": float(2 * mt["test_loss"][-1]),
            "rate_train": pi.variance(np.asarray(r.built.train.x)) / n,
            "rate_test": pi.variance(np.asarray(r.built.test.x)) / n,
            "path_norm_t": [k * r.dt for k in steps],
            "path_norm": norms,
            "path_norm_max_over_P_pi": max(norms) / big_p,
        }
    if trained:
        errs = [r["err_train"] for r in trained.values()]
        stats |= {"trained": trained, "trained_err_slope": loglog_fit(p.train_widths, errs).slope}
    return stats


def evaluate(s: Study[BarronParams], st: dict) -> dict:
    p, mean, se = s.params, np.asarray(st["mean_error"]), np.asarray(st["se_error"])
    big_p, b2, box = st["path_norm_pi"], st["B2_sq_pi"], st["input_sup_norm"]
    tol = p.slope_tolerance
    worst = float(np.max(mean / np.asarray(st["bound"])))
    z = float(np.max(np.abs(mean - np.asarray(st["expected_error"])) / se))
    checks = {
        "bound": check(
            worst,
            f"max_N mean err(N) / ({p.bound_factor:g} P(pi)^2 / N) < 1 (P(pi) = {big_p:.4g})",
            worst < 1.0,
        ),
        "slope": check(st["slope"], f"|slope + 1| <= {tol:g}", abs(st["slope"] + 1.0) <= tol),
        "expected_error": check(
            z, f"max_N |mean err(N) - V(pi)/N| / SE(N) <= 4 (V(pi) = {st['V_pi']:.4g})", z <= 4.0
        ),
        "premise": check(
            {"B2_sq_over_3P_sq": b2 / (3 * big_p**2), "input_sup_norm": box},
            "B2(pi)^2 <= 3 P(pi)^2 and ||x||_inf <= 1",
            b2 <= 3 * big_p**2 and box <= 1.0,
        ),
    }
    if st.get("trained"):
        runs = st["trained"].values()
        end = max(
            max(r["err_train"] / r["rate_train"], r["err_test"] / r["rate_test"]) for r in runs
        )
        start = min(r["err_train_initial"] / r["rate_train"] for r in runs)
        checks["trained_below_rate"] = check(
            end, "max over N and mu in {train, test} of err_mu(f_N(T)) / (V_mu(pi)/N) < 1", end < 1
        )
        checks["untrained_misses_rate"] = check(
            start, "min over N of err_train(f_N(0)) / (V_train(pi)/N) > 1", start > 1
        )
    return checks


def figures(s: Study[BarronParams], st: dict, runs) -> list:
    from ..plots import plt, save_figure

    ns, err, trained = np.asarray(st["widths"], float), st["_err"], st.get("trained", {})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.1), layout="constrained")
    ax.loglog(np.repeat(ns, err.shape[0]), err.T.ravel(), ".", ms=2, color="#7fb3d5", alpha=0.6)
    ax.errorbar(ns, st["mean_error"], 2 * np.asarray(st["se_error"]), fmt="o-", label="sampled")
    ax.loglog(ns, st["bound"], "k--", label=rf"bound ${s.params.bound_factor:g}\,P(\pi)^2/N$")
    ax.loglog(ns, st["B2_sq_pi"] / ns, ":", color="gray", label=r"$B_2(\pi)^2/N$")
    ax.loglog(ns, st["expected_error"], "-", color="#c0392b", lw=1, label=r"$V(\pi)/N$")
    tw = [int(name[1:]) for name in trained]
    for key, mark in (("err_train_initial", "x"), ("err_test", "s")) if trained else ():
        ax.loglog(tw, [r[key] for r in trained.values()], mark, color="#27ae60", label=key)
    ax.set(xlabel="N (neurons)", ylabel=r"squared error $\|f - f_N\|^2_{L^2(\mu)}$")
    ax.set_title(f"Barron approximation rate: sampled slope {st['slope']:.3f}")
    for name, r in trained.items():
        t = np.asarray(r["path_norm_t"])
        ax2.semilogx(t[t > 0], np.asarray(r["path_norm"])[t > 0], "o-", ms=2, label=name)
    ax2.axhline(st["path_norm_pi"], color="k", ls="--", label=r"$P(\pi) \geq \|f\|_B$")
    ax2.set(xlabel="t", ylabel=r"path norm $\|\Theta\|_P$", title="trained networks")
    ax.legend(fontsize=8), ax2.legend(fontsize=8)
    fig.suptitle(
        r"N neurons sampled from a representing measure reach $\|f - f_N\|^2 \leq "
        r"3\|f\|_B^2/N$ (slope -1); trained networks reach $V(\pi)/N$"
    )
    return [save_figure(fig, s.figure_path("error_vs_n.png"))]


BARRON_RATE = Experiment(
    name="barron_rate",
    summary="N neurons sampled from a representing measure: ||f - f_N||^2 <= 3 ||f||_B^2 / N, "
    "slope -1; trained width-N networks reach the rate V(pi)/N (Barron 1993, E-Ma-Wu 2019)",
    claim=CLAIM,
    params=BarronParams,
    quick=(
        "experiment.params.widths=[10,30,100,300,1000,3000]",
        "experiment.params.eval_points=2048",
        "experiment.params.train_widths=[16,128]",
        "data.n_train=512",
        "data.n_test=512",
        "dynamics.steps=2000",
        "record.snapshot_every=20",
    ),
    checks=(
        CheckSpec("bound", "max_N mean err(N) / (bound_factor P(pi)^2 / N) < 1"),
        CheckSpec("slope", "|log-log slope of mean err against N + 1| <= slope_tolerance"),
        CheckSpec("expected_error", "max_N |mean err(N) - V(pi)/N| / SE(N) <= 4 (SE over draws)"),
        CheckSpec(
            "premise", "B2(pi)^2 <= 3 P(pi)^2 and ||x||_inf <= 1 (then V(pi)/N <= 3 P(pi)^2/N)"
        ),
        CheckSpec(
            "trained_below_rate",
            "max over trained N and mu in {train, test} of err_mu(f_N(T)) / (V_mu(pi)/N) < 1",
        ),
        CheckSpec(
            "untrained_misses_rate",
            "min over N of err_train(f_N(0)) / (V_train(pi)/N) > 1 (so the check above "
            "measures training)",
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
