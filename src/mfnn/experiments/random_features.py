"""`random_features`: training only the output weights a of frozen random features is a
convex problem with R(t) - R* <= ||a_0 - a*||^2_{L2(rho_0)} / (2t); training both layers is
compared on the same time budget."""

from __future__ import annotations

import math
import zlib

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field

from ..build import build
from ..errors import ConfigError
from ..plots import save_figure
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
Random features (Rahimi and Recht 2008; the random feature model of E, Ma and Wu 2020, "A
comparative analysis of optimization and generalization properties of two-layer neural
network and random feature models under gradient descent dynamics"; H. Yang's overview
"Mean-field analysis of neural networks"): the first layer (w, b) is frozen at its random
initialization rho_0 and only the output weights a are trained. The risk
R(a) = (1/(2n)) |Phi a / m - y|^2 (Phi_ij = sigma(w_j . x_i + b_j)) is then a convex
quadratic in a, and along the gradient flow in H = L2(rho_0), <u, v>_H = (1/m) sum_j u_j v_j,

    R(t) - R* <= ||a_0 - a*||^2_H / (2t).

mfnn's mean_field velocity da_j/dt = -m dR/da_j = -(1/n) sum_i r_i Phi_ij (r = f - y; the
frozen blocks get zero velocity) is exactly grad_H R, so the bound holds in mfnn's time t.
Proof: E(t) = t (R(a_t) - R*) + |a_t - a*|_H^2 / 2 has dE/dt <= 0 by convexity. Euler with
step dt is gradient descent in H; for dt L <= 1, L = lambda_max(Phi^T Phi / (n m)) the
smoothness constant, R(a_k) - R* <= |a_0 - a*|_H^2 / (2 k dt) holds exactly at t = k dt
(Garrigos and Gower 2023, Theorem 3.4), with no O(dt) term. For a quadratic the sharper
sup_t t (R - R*) / (|a_0 - a*|_H^2 / 2) <= 1/(2e) holds (reported, not checked).

Setup: inputs x ~ data.inputs, ReLU units with bias, (a_0, w, b) ~ model.init. The target
lies in the span of the same frozen features: y_i = (1/m) sum_j a*_j sigma(w_j . x_i + b_j)
with a*_j = teacher_scale w_j1, plus N(0, noise^2) label noise. a* and R* by least squares
in float64: a* = a_0 + the minimum-norm solution of (Phi / m) delta = y - Phi a_0 / m, the
minimizer closest to a_0 in H (the limit of the flow). Run `random_features`:
model.trainable = [a], Euler, dynamics.dt, dynamics.steps, every iterate recorded. Run
`both_layers` (compare): the same particles, data, dt and steps with every block trained.

Statistic: ratio(t) = t (R(t) - R*) / (|a_0 - a*|_H^2 / 2) at every recorded t > 0.
Checks:
- bound: max_t ratio(t) <= bound_constant (1, the theorem's constant) + 1e-9 (round-off); a
  smaller constant (0.05) is a control that fails;
- a_star_converged: |Phi^T (Phi a* / m - y)| / |Phi^T y| <= 1e-8 and min_t (R(t) - R*) >=
  -1e-12 R(0) (R* is the minimum up to round-off);
- step_size: dt L <= 1 (the premise of the discrete bound; dt L > 2 diverges);
- velocity_convention: |v_mfnn(theta_0) - (-(1/n) Phi^T r, 0, 0)| / |.| <= 1e-10;
- frozen_features: (w, b) of the last snapshot equal the initial ones exactly;
- random_features/energy_identity (the run's energy dissipation identity).
Reported: both runs' final and excess risks, and the both_layers ratio against the same
bound (its flow is not convex in (a, w, b), so the bound is not a claim about it).
"""

FLOAT_TOL = 1e-9  # on the ratio: round-off of R(t) - R* in float64

BOTH_LAYERS_ENERGY = (
    "the both-layer ReLU risk is not differentiable where a hinge w_j . x_i + b_j = 0 passes "
    "through a training input. Late in training the iterates sit on such hinges and each "
    "Euler step crosses some of them (chattering about a sliding mode of the flow; the "
    "summary reports runs.both_layers.hinge_crossings_at_T), so the residual of the identity "
    "is O(1) there, not O(dt): it does not shrink with dt (tried from 1 down to 0.1). The "
    "claim is about the random-features run, whose risk is quadratic in a (hinges frozen) "
    "and whose identity counts."
)


class RandomFeaturesParams(Params):
    teacher_scale: float = Field(
        2.0, allow_inf_nan=False, description="a*_j = teacher_scale w_j1: the target's weights"
    )
    noise: float = Field(0.0, ge=0, description="label noise std (0: R* = 0)")
    bound_constant: float = Field(
        1.0, gt=0, description="checked: max_t t (R - R*) / (||a_0 - a*||^2 / 2) <= this"
    )
    compare: bool = Field(True, description="also train both layers (reported)")

    def check_config(self, cfg) -> None:
        ms, dyn, data = cfg.model, cfg.dynamics, cfg.data
        plain = "unset (the plain gradient flow)"
        rules = [  # (holds, field, rule, value)
            (ms.scaling == "mean_field", "model.scaling", "mean_field", ms.scaling),
            (ms.train_output, "model.train_output", "true (a is trained)", ms.train_output),
            (ms.trainable in (None, ["a"]), "model.trainable", "[a] or unset", ms.trainable),
            (ms.init.path is None, "model.init.path", "unset (drawn here)", ms.init.path),
            (ms.width >= 2, "model.width", ">= 2", ms.width),
            (dyn.kind == "gradient_flow", "dynamics.kind", "gradient_flow", dyn.kind),
            (dyn.integrator == "euler", "dynamics.integrator", "euler", dyn.integrator),
            (dyn.langevin is None, "dynamics.langevin", plain, dyn.langevin),
            (dyn.birth_death is None, "dynamics.birth_death", plain, dyn.birth_death),
            (dyn.domain is None, "dynamics.domain", plain, dyn.domain),
            (cfg.objective.l2 == 0, "objective.l2", "0 (the unregularized risk)", cfg.objective.l2),
            (data.path is None, "data.path", "unset (the target is made in the span)", data.path),
            (data.population is None, "data.population", "unset", data.population),
            (data.n_train >= 2, "data.n_train", ">= 2", data.n_train),
        ]
        for holds, key, rule, value in rules:
            if not holds:
                raise ConfigError(f"random_features needs `{key}` {rule}; got {value!r}.")


# ------------------------------------------------------------------ the convex problem


def least_squares(phi: np.ndarray, y: np.ndarray, a0: np.ndarray) -> dict:
    r"""The minimizer of R(a) = (1/(2n)) |Phi a / m - y|^2 closest to a_0 in L2(rho_0).

        a* = a_0 + argmin {|delta| : delta minimizes |(Phi / m) delta - (y - Phi a_0 / m)|},
        R* = R(a*),   L = lambda_max(Phi^T Phi / (n m))   (the Hessian in L2(rho_0)),
        rel_gradient = |Phi^T (Phi a* / m - y)| / |Phi^T y|.

    Args:
        phi: features Phi (n, m), Phi_ij = sigma(w_j . x_i + b_j).
        y: targets (n,).
        a0: initial output weights (m,).

    Returns:
        dict with a_star (m,), r_star, dist2 = (1/m) sum_j (a_0j - a*_j)^2, L,
        rel_gradient.

    Example:
        >>> phi = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> s = least_squares(phi, phi @ np.array([4.0, -2.0]) / 2, np.zeros(2))
        >>> np.round(s["a_star"], 10).tolist(), round(s["dist2"], 10)
        ([4.0, -2.0], 10.0)
    """
    n, m = phi.shape
    a_star = a0 + np.linalg.lstsq(phi / m, y - phi @ a0 / m, rcond=None)[0]
    res = phi @ a_star / m - y
    ty = np.linalg.norm(phi.T @ y)
    return {
        "a_star": a_star,
        "r_star": float(0.5 * np.mean(res**2)),
        "dist2": float(np.mean((a0 - a_star) ** 2)),
        "L": float(np.linalg.eigvalsh(phi.T @ phi / (n * m))[-1]),
        "rel_gradient": float(np.linalg.norm(phi.T @ res) / ty) if ty > 0 else 0.0,
    }


def bound_ratio(t: np.ndarray, risk: np.ndarray, r_star: float, dist2: float) -> np.ndarray:
    r"""ratio(t) = t (R(t) - R*) / (|a_0 - a*|^2_{L2(rho_0)} / 2) at the times t > 0.

    The random-features bound R(t) - R* <= |a_0 - a*|^2 / (2t) is ratio(t) <= 1.

    Example:
        >>> bound_ratio(np.array([0.0, 1.0, 4.0]), np.array([9.0, 0.5, 0.25]), 0.0, 2.0)
        array([0.5, 1. ])
    """
    keep = t > 0
    return t[keep] * (risk[keep] - r_star) / (0.5 * dist2)


def feature_matrix(model, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Phi (n, m), Phi_ij = sigma(w_j . x_i + b_j): the features of the particles ``theta``
    (rows (a, w, b)) at the inputs ``x`` (n, d), their output weights set to 1."""
    _, w, b = model.split(jnp.asarray(theta))
    ones = model.join(jnp.ones(theta.shape[0], theta.dtype), w, b)
    return np.asarray(model.features(ones, jnp.asarray(x)))


def _active(model, theta, x) -> np.ndarray:
    """The activation pattern w_j . x_i + b_j > 0, (n, m)."""
    _, w, b = model.split(jnp.asarray(theta))
    return x @ np.asarray(w).T + np.asarray(b) > 0


# ------------------------------------------------------------------------ the study


def plan(s: Study[RandomFeaturesParams]) -> dict:
    """The features and inputs of the config (via `build`), the target in their span, as
    input files; one run training a, one training every block."""
    p, cfg = s.params, s.config
    changes = {"model.trainable": ["a"], "data.target": "sign", "data.n_test": 0}
    probe = build(s.sub_config("problem", changes))  # only the inputs of `sign` are used
    model, theta0, x = probe.model, np.asarray(probe.theta0), np.asarray(probe.train.x)
    a0, w, b = (np.asarray(v) for v in model.split(jnp.asarray(theta0)))
    phi = feature_matrix(model, theta0, x)
    y = phi @ (p.teacher_scale * w[:, 0]) / theta0.shape[0]
    if p.noise > 0:
        y = y + p.noise * np.random.default_rng([cfg.seed, 0x5F]).standard_normal(y.shape)
    # named by content: another problem is another file, hence another sub-run config
    tag = f"{zlib.crc32(np.concatenate([x.ravel(), y, theta0.ravel()])):08x}"
    files = {
        "data.path": str(s.input_file(f"train-{tag}", x=x, y=y).resolve()),
        "model.init.path": str(s.input_file(f"init-{tag}", a=a0, w=w, b=b).resolve()),
        "data.target": None,
        "data.n_test": 0,
    }
    runs = {"random_features": ["a"]} | ({"both_layers": None} if p.compare else {})
    return {k: Run(s.sub_config(k, files | {"model.trainable": v})) for k, v in runs.items()}


def analyze(s: Study[RandomFeaturesParams], runs) -> dict:
    rf = runs["random_features"]
    model, theta0 = rf.model, np.asarray(rf.built.theta0)
    x, y = np.asarray(rf.built.train.x), np.asarray(rf.built.train.y)
    a0, w, b = (np.asarray(v) for v in model.split(jnp.asarray(theta0)))
    phi = feature_matrix(model, theta0, x)
    ls = least_squares(phi, y, a0)
    r_star, dist2 = ls["r_star"], ls["dist2"]
    per, curves = {}, {}
    for name, r in runs.items():
        t, loss = r.metrics["t"], r.metrics["loss"]
        ratio = bound_ratio(t, loss, r_star, dist2)
        curves[name] = {"t": t, "loss": loss, "ratio": ratio}
        per[name] = {
            "trainable": list(r.model.trainable or r.model.present_blocks),
            "initial_loss": float(loss[0]),
            "final_excess": float(loss[-1] - r_star),
            "bound_at_T": float(dist2 / (2 * t[-1])),
            "max_ratio": float(ratio.max()) if ratio.size else float("nan"),
            "t_at_max_ratio": float(t[t > 0][np.argmax(ratio)]) if ratio.size else None,
        }
    if "both_layers" in runs:  # hinges w_j . x_i + b_j = 0 that the last Euler step crosses
        bl = runs["both_layers"]
        th = jnp.asarray(bl.particles("last"))
        nxt = th + bl.dt * bl.built.dynamics.velocity(th, 0, bl.built.key)[0]
        crossed = _active(model, th, x) != _active(model, nxt, x)
        per["both_layers"]["hinge_crossings_at_T"] = int(crossed.sum())
    # the velocity a step uses at theta_0, against -(1/n) Phi^T r in the a column
    v = np.asarray(rf.built.dynamics.velocity(jnp.asarray(theta0), 0, rf.built.key)[0])
    expected = np.zeros_like(v)
    expected[:, 0] = -(phi.T @ (phi @ a0 / phi.shape[1] - y)) / phi.shape[0]
    teacher = s.params.teacher_scale * w[:, 0]
    _, w_end, b_end = (np.asarray(u) for u in model.split(jnp.asarray(rf.particles("last"))))
    return {
        "final_loss": float(curves["random_features"]["loss"][-1]),
        "r_star": r_star,
        "dist2_a0_astar": dist2,
        "L": ls["L"],
        "dt_L": rf.dt * ls["L"],
        "lstsq_rel_gradient": ls["rel_gradient"],
        "a_star_vs_teacher": float(
            np.linalg.norm(ls["a_star"] - teacher) / max(np.linalg.norm(teacher), 1e-300)
        ),
        "min_excess": float(np.min(curves["random_features"]["loss"] - r_star)),
        "velocity_error": float(np.linalg.norm(v - expected) / np.linalg.norm(expected)),
        "frozen_change": float(max(np.abs(w - w_end).max(), np.abs(b - b_end).max())),
        "quadratic_sharp_constant": 1 / (2 * math.e),
        "runs": per,
        "_curves": curves,
    }


def evaluate(s: Study[RandomFeaturesParams], st: dict) -> dict:
    cmax, rf = s.params.bound_constant, st["runs"]["random_features"]
    worst, r0 = rf["max_ratio"], rf["initial_loss"]
    converged = st["lstsq_rel_gradient"] <= 1e-8 and st["min_excess"] >= -1e-12 * r0
    return {
        "bound": check(
            worst,
            f"max over recorded t > 0 of t (R(t) - R*) / (||a_0 - a*||^2_L2(rho0) / 2) <= "
            f"{cmax:g} + {FLOAT_TOL:g} (R* = {st['r_star']:.3e}, "
            f"||a_0 - a*||^2 = {st['dist2_a0_astar']:.4g})",
            bool(np.isfinite(worst) and worst <= cmax + FLOAT_TOL),
        ),
        "a_star_converged": check(
            {"rel_gradient": st["lstsq_rel_gradient"], "min_excess": st["min_excess"]},
            "relative gradient |Phi^T (Phi a*/m - y)| / |Phi^T y| <= 1e-8 and "
            f"min_t (R(t) - R*) >= -1e-12 R(0) (= {-1e-12 * r0:.3g})",
            converged,
        ),
        "step_size": check(
            st["dt_L"],
            f"dt L <= 1 (L = lambda_max(Phi^T Phi / (n m)) = {st['L']:.4g})",
            st["dt_L"] <= 1.0,
        ),
        "velocity_convention": check(
            st["velocity_error"],
            "|v_mfnn(theta_0) - (-(1/n) Phi^T r, 0, 0)| / |.| <= 1e-10 (mfnn's time is the "
            "L2(rho_0) gradient flow)",
            st["velocity_error"] <= 1e-10,
        ),
        "frozen_features": check(
            st["frozen_change"], "max |(w, b)(T) - (w, b)(0)| == 0", st["frozen_change"] == 0.0
        ),
    }


def figures(s: Study[RandomFeaturesParams], st: dict, runs) -> list:
    r_star, dist2, curves = st["r_star"], st["dist2_a0_astar"], st["_curves"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = {"random_features": "#2471a3", "both_layers": "#c0392b"}
    for name, c in curves.items():
        keep = (c["t"] > 0) & (c["loss"] > r_star)
        ax.loglog(c["t"][keep], c["loss"][keep] - r_star, color=colors[name], lw=2, label=name)
        pos = c["ratio"] > 0
        ax2.loglog(c["t"][c["t"] > 0][pos], c["ratio"][pos], color=colors[name], label=name)
    tt = curves["random_features"]["t"][curves["random_features"]["t"] > 0]
    ax.loglog(tt, dist2 / (2 * tt), "k--", lw=1.2, label=r"bound $\|a_0-a^*\|^2/(2t)$")
    ax.loglog(tt, dist2 / (4 * math.e * tt), ":", color="gray", label="quadratic: bound / (2e)")
    ax.set(xlabel="t", ylabel=r"$R(t) - R^*$", title=f"excess risk (R* = {r_star:.2e})")
    ax2.axhline(s.params.bound_constant, color="k", ls="--", lw=1, label="checked constant")
    ax2.axhline(1 / (2 * math.e), color="gray", ls=":", lw=1, label="1/(2e)")
    ax2.set(xlabel="t", ylabel=r"$t\,(R(t)-R^*) / (\|a_0-a^*\|^2/2)$", title="bound ratio")
    ax.legend(fontsize=8), ax2.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, s.figure_path("risk_bound.png"))]


RANDOM_FEATURES = Experiment(
    name="random_features",
    summary="training only a of frozen random features: R(t) - R* <= ||a_0 - a*||^2 / (2t); "
    "both layers compared",
    claim=CLAIM,
    params=RandomFeaturesParams,
    quick=(
        "model.width=64",
        "data.n_train=128",
        "dynamics.steps=4000",
        "record.every=1",
        "record.snapshot_every=2000",
    ),
    checks=(
        CheckSpec("bound", "max_t t (R(t) - R*) / (||a_0 - a*||^2 / 2) <= bound_constant + 1e-9"),
        CheckSpec(
            "a_star_converged", "relative gradient <= 1e-8 and min_t (R - R*) >= -1e-12 R(0)"
        ),
        CheckSpec("step_size", "dt L <= 1, L = lambda_max(Phi^T Phi / (n m))"),
        CheckSpec("velocity_convention", "|v_mfnn(theta_0) - (-grad_H R, 0, 0)| / |.| <= 1e-10"),
        CheckSpec("frozen_features", "max |(w, b)(T) - (w, b)(0)| == 0"),
        CheckSpec(
            "both_layers/energy_identity",
            "median over records of |energy_rel_residual| <= 0.1",
            informational=BOTH_LAYERS_ENERGY,
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
