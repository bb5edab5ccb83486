"""`barron_rate`: N neurons sampled from a measure that represents a Barron function f give
||f - f_N||^2 <= 3 ||f||_B^2 / N; trained width-N networks reach that rate too."""

from __future__ import annotations

import dataclasses
import math
import zlib

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.special import ndtr

from ..build import enable_dtype
from ..diagnostics.norms import path_norm
from ..errors import ConfigError
from ..plots import save_figure
from ..stats import loglog_fit
from ..study import Call, CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
Barron's theorem (Barron 1993; E, Ma and Wu 2019, "Barron spaces and the compositional
function spaces for neural network models", Theorem 4; Theorems 2.1-2.2 of H. Yang's
overview "Mean-field analysis of neural networks"): for a Barron function f and any N there
is a two-layer ReLU network f_N with N neurons and ||f - f_N||^2_{L2(mu)} <= 3 ||f||_B^2 / N
for every probability measure mu on the box [-1, 1]^d. The proof samples the N neurons
i.i.d. from a measure pi that represents f = E_pi[a relu(w . x + b)]:
E ||f - f_N||^2 = V_mu(pi) / N, V_mu(pi) = E_pi ||a relu(w . x + b)||^2_mu - ||f||^2_mu, and
V_mu(pi) <= B2(pi)^2 := E_pi a^2 (||w||_1 + |b|)^2 <= 3 P(pi)^2 on the box, with the path
norm P(pi) := E_pi |a| (||w||_1 + |b|) >= ||f||_B (the Barron norm is an infimum over
representing measures).

Setup: pi = sum_k p_k delta_{a_k} (x) N(mu_k, s_k^2 I_{d+1}) over theta = (a, w, b)
(experiment.params.measure; d = data.inputs.dim = 4). f, E_pi[a^2 relu^2], P(pi) and B2(pi)^2
are closed forms (w . x + b ~ N(mu_k . (x, 1), s_k^2 |(x, 1)|^2) given k, and E relu(Z),
E relu(Z)^2, E|Z| of a Gaussian Z), so f is exact at every point and nothing is estimated
but the error of the sampled networks.

Sampling (no training): mu = the empirical measure of eval_points inputs uniform in the box;
for each N in widths and each of `seeds` draws, err = ||f - f_N||^2_{L2(mu)}.
- bound: max_N mean err(N) / (bound_factor P(pi)^2 / N) < 1;
- slope: |least-squares slope of log mean err against log N + 1| <= slope_tolerance;
- expected_error: max_N |mean err(N) - V_mu(pi)/N| / SE(N) <= 4 (SE over the draws);
- premise: B2(pi)^2 <= 3 P(pi)^2 and ||x||_inf <= 1, which make V_mu(pi)/N <= 3 P(pi)^2/N.
sample_std_factor != 1 draws (w, b) with scaled stds, a measure that does not represent f:
the error then stops at a bias floor and the three statistical checks fail (a control).

Training (train_widths; none: no training): does training find networks as good as the
theorem's construction? The theorem is an existence statement, and the global convergence
of mean-field training (Chizat and Bach 2018; Mei, Montanari and Nguyen 2018) is a statement
about infinite width, so at finite N this is a measured statement about trained networks.
For each N a mean_field ReLU network of width N (a_0 ~ N(0, 0.1^2): it starts near f = 0) is
trained by full-batch gradient descent (Euler, dynamics.dt, dynamics.steps) on the squared
loss against y = f(x) at data.n_train inputs uniform in the box. The theorem holds for
mu = the training inputs' empirical measure mu_n and the test inputs' mu_test alike, with V
exact on those points; err <= V_mu(pi)/N is at least as good as the sampled construction in
expectation, and below 3 P(pi)^2 / N.
- trained_below_rate: max over N and mu in {mu_n, mu_test} of err_mu(f_N(T)) /
  (V_mu(pi) / N) < 1 (err = 2 R: the recorded risk is half the mean squared error);
- untrained_misses_rate: min over N of err_{mu_n}(f_N(0)) / (V_{mu_n}(pi) / N) > 1: the
  networks at t = 0 fail the check above, so it measures training (a width too small for
  the rate to be below ||f||^2 fails here).
Reported: the trained errors' log-log slope against N, and each network's path norm
||Theta||_P = (1/m) sum_j |a_j| (||w_j||_1 + |b_j|) at every snapshot against P(pi) (nothing
forces a trained network's path norm below P(pi), so it is not checked).
"""

DEFAULT_MEASURE = (
    {"weight": 0.6, "a": 2.0, "mean": (1.0, 0.0, 0.0, 0.0, 0.25), "std": 0.5},
    {"weight": 0.4, "a": -1.5, "mean": (0.0, -1.0, 0.5, 0.0, 0.0), "std": 0.75},
)
CHUNK = 2048  # neurons per block when evaluating f_N (memory: eval_points x CHUNK floats)


# ------------------------------------------------------------------------ the measure


def relu_gaussian_moments(mean, var) -> tuple[np.ndarray, np.ndarray]:
    r"""E relu(Z) and E relu(Z)^2 for Z ~ N(mean, var), var > 0 (elementwise).

        E relu(Z)   = m Phi(m/s) + s phi(m/s),
        E relu(Z)^2 = (m^2 + s^2) Phi(m/s) + m s phi(m/s),     s = sqrt(var).

    Example:
        >>> m1, m2 = relu_gaussian_moments(np.array([0.0]), np.array([1.0]))
        >>> round(float(m1[0]), 6), round(float(m2[0]), 6)  # 1/sqrt(2 pi), 1/2
        (0.398942, 0.5)
    """
    mean, var = np.asarray(mean, float), np.asarray(var, float)
    s = np.sqrt(var)
    z = mean / s
    cdf, pdf = ndtr(z), np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return mean * cdf + s * pdf, (mean * mean + var) * cdf + mean * s * pdf


def abs_gaussian_mean(mean, std) -> np.ndarray:
    r"""E|Z| for Z ~ N(mean, std^2): s sqrt(2/pi) exp(-m^2/(2 s^2)) + m (1 - 2 Phi(-m/s)).

    Example:
        >>> round(float(abs_gaussian_mean(0.0, 1.0)), 6)  # sqrt(2/pi)
        0.797885
    """
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    return std * math.sqrt(2.0 / math.pi) * np.exp(-(mean**2) / (2 * std**2)) + mean * (
        1.0 - 2.0 * ndtr(-mean / std)
    )


@dataclasses.dataclass(frozen=True)
class GaussianMixtureMeasure:
    r"""pi = sum_k p_k delta_{a_k} (x) N(mu_k, s_k^2 I_{d+1}) over neurons theta = (a, w, b).

        f(x) = E_pi[a relu(w . x + b)] = sum_k p_k a_k E relu(N(mu_k . x~, s_k^2 |x~|^2)),
        x~ = (x, 1).

    Attributes:
        weights: p (K,), positive, sum 1.
        a: output weights a_k (K,).
        mean: mu_k (K, d + 1): w then b.
        std: s_k (K,), positive.

    Example:
        >>> pi = GaussianMixtureMeasure(
        ...     np.array([1.0]), np.array([2.0]), np.array([[0.0, 0.0]]), np.array([1.0])
        ... )
        >>> round(float(pi.f(np.zeros((1, 1)))[0]), 6)  # 2 E relu(N(0, 1))
        0.797885
        >>> round(pi.path_norm(), 6)  # 2 (E|w| + E|b|) = 4 sqrt(2/pi)
        3.191538
    """

    weights: np.ndarray
    a: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, components) -> GaussianMixtureMeasure:
        """From components {weight, a, mean, std} (mappings or `Component`s)."""
        rows = [dict(c) for c in components]
        return cls(*(np.array([r[k] for r in rows], float) for k in ("weight", "a", "mean", "std")))

    @property
    def d(self) -> int:
        return int(self.mean.shape[1]) - 1

    def _moments(self, x):
        xt = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
        var = (xt**2).sum(axis=1)[:, None] * self.std[None, :] ** 2
        return relu_gaussian_moments(xt @ self.mean.T, var)

    def f(self, x: np.ndarray) -> np.ndarray:
        """f(x) at inputs x (n, d) -> (n,)."""
        return self._moments(x)[0] @ (self.weights * self.a)

    def second_moment(self, x: np.ndarray) -> np.ndarray:
        """E_pi[a^2 relu(w . x + b)^2] at inputs x (n, d) -> (n,)."""
        return self._moments(x)[1] @ (self.weights * self.a**2)

    def variance(self, x: np.ndarray) -> float:
        """V_mu(pi) = E_pi ||a relu(w . x + b)||^2_mu - ||f||^2_mu, mu the points x: N times
        the expected error of N sampled neurons."""
        return float(np.mean(self.second_moment(x)) - np.mean(self.f(x) ** 2))

    def path_norm(self) -> float:
        """P(pi) = E_pi |a| (||w||_1 + |b|) (>= ||f||_B)."""
        e = abs_gaussian_mean(self.mean, self.std[:, None]).sum(axis=1)
        return float(self.weights @ (np.abs(self.a) * e))

    def b2_squared(self) -> float:
        """B2(pi)^2 = E_pi a^2 (||w||_1 + |b|)^2 (coordinates independent given k)."""
        e = abs_gaussian_mean(self.mean, self.std[:, None])
        second = (self.mean**2 + self.std[:, None] ** 2).sum(axis=1)
        sq = second + e.sum(axis=1) ** 2 - (e**2).sum(axis=1)
        return float(self.weights @ (self.a**2 * sq))

    def sample(self, rng: np.random.Generator, n: int, std_factor: float = 1.0):
        """n i.i.d. neurons: (a (n,), w (n, d), b (n,)); ``std_factor`` scales s_k."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.d + 1))
        theta = self.mean[k] + (std_factor * self.std[k])[:, None] * z
        return self.a[k], theta[:, : self.d], theta[:, self.d]


@jax.jit
def _relu_sum(x, w, b, a):
    """sum_j a_j relu(w_j . x_i + b_j) for a block of neurons: (n,)."""
    return jnp.maximum(x @ w.T + b, 0.0) @ a


def sampled_error(x, fx, a, w, b) -> float:
    """||f - f_N||^2 on the points x (the mean over them), f_N = (1/N) sum_j a_j relu(.).

    The neurons go in blocks of at most CHUNK, each padded with a = 0 neurons to a power
    of two, so a handful of compiled shapes serve every N.

    Example:
        >>> x = np.array([[1.0], [-1.0]])
        >>> sampled_error(x, np.zeros(2), np.array([2.0]), np.array([[1.0]]), np.zeros(1))
        2.0
    """
    n_neurons = a.shape[0]
    xj = jnp.asarray(x, jnp.float64)
    fn = np.zeros(x.shape[0])
    for s in range(0, n_neurons, CHUNK):
        blk = slice(s, min(s + CHUNK, n_neurons))
        size = blk.stop - blk.start
        pad = 1 << max(size - 1, 0).bit_length()
        wb, bb, ab = np.zeros((pad, w.shape[1])), np.zeros(pad), np.zeros(pad)
        wb[:size], bb[:size], ab[:size] = w[blk], b[blk], a[blk]
        fn += np.asarray(_relu_sum(xj, *(jnp.asarray(v, jnp.float64) for v in (wb, bb, ab))))
    return float(np.mean((fx - fn / n_neurons) ** 2))


def sampling_study(
    measure, low: float, high: float, dim: int, eval_points: int, widths, seeds: int,
    std_factor: float, seed: int,
) -> dict:  # fmt: skip
    """err[s][i] = ||f - f_N||^2 on eval_points inputs uniform in [low, high]^dim for N =
    widths[i] and draw s; the drawn networks' path norms; V_mu(pi) and ||f||^2 on those
    points (a `Call`: JSON in and out)."""
    enable_dtype("float64")
    pi = GaussianMixtureMeasure.of(measure)
    x = np.random.default_rng([seed, 0xE7]).uniform(low, high, (eval_points, dim))
    fx = pi.f(x)
    err, pnorm = np.empty((seeds, len(widths))), np.empty((seeds, len(widths)))
    for i, n in enumerate(widths):
        for s in range(seeds):
            a, w, b = pi.sample(np.random.default_rng([seed, 0xBA, n, s]), n, std_factor)
            err[s, i] = sampled_error(x, fx, a, w, b)
            pnorm[s, i] = float(np.mean(np.abs(a) * (np.abs(w).sum(axis=1) + np.abs(b))))
    return {
        "err": err.tolist(),
        "path_norm": pnorm.tolist(),
        "V": pi.variance(x),
        "f_norm2": float(np.mean(fx**2)),
    }


# --------------------------------------------------------------------------- params


class Component(BaseModel):
    """One component p delta_a (x) N(mean, std^2 I) of pi."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(gt=0, description="p_k")
    a: float = Field(allow_inf_nan=False, description="the output weight a_k")
    mean: tuple[float, ...] = Field(description="mu_k: w (d numbers) then b")
    std: float = Field(gt=0, description="s_k")


class BarronParams(Params):
    measure: tuple[Component, ...] = Field(
        DEFAULT_MEASURE, min_length=1, description="pi: components {weight, a, mean, std}"
    )
    widths: tuple[int, ...] = Field(
        (10, 30, 100, 300, 1000, 3000, 10000),
        description="N of the sampled networks: >= 3 distinct, max >= 100 min (the slope)",
    )
    seeds: int = Field(32, ge=2, description="independent draws of f_N per N")
    eval_points: int = Field(4096, ge=16, description="inputs of mu (uniform in the box)")
    bound_factor: float = Field(3.0, gt=0, description="the theorem's constant")
    slope_tolerance: float = Field(0.1, gt=0, description="|slope + 1| <= this")
    sample_std_factor: float = Field(
        1.0, gt=0, description="scales the stds of the draws (!= 1: not pi, a control)"
    )
    train_widths: tuple[int, ...] = Field(
        (16, 64, 256), description="widths of the trained networks (empty: no training)"
    )

    @field_validator("measure")
    @classmethod
    def _weights_sum_to_one(cls, v):
        total = sum(c.weight for c in v)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"the weights must sum to 1 (pi is a probability); sum {total:.6g}")
        return v

    @field_validator("widths")
    @classmethod
    def _span(cls, v):
        if len(set(v)) != len(v) or len(v) < 3 or min(v) < 1 or max(v) < 100 * min(v):
            raise ValueError(
                f"need >= 3 distinct integers >= 1 with max >= 100 min (the slope); got {v}"
            )
        return tuple(sorted(v))

    @field_validator("train_widths")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v) or any(n < 1 for n in v):
            raise ValueError(f"need distinct integers >= 1; got {v}")
        return tuple(sorted(v))

    def pi(self) -> GaussianMixtureMeasure:
        return GaussianMixtureMeasure.of(c.model_dump() for c in self.measure)

    def check_config(self, cfg) -> None:
        d, ms = cfg.data.inputs.dim, cfg.model
        for i, c in enumerate(self.measure):
            if len(c.mean) != d + 1:
                raise ConfigError(
                    f"`experiment.params.measure.{i}.mean` must hold d + 1 = {d + 1} numbers "
                    f"(w then b; d = `data.inputs.dim`); got {list(c.mean)}."
                )
        data, snap = cfg.data, cfg.record.snapshot_every
        rules = [  # (holds, field, rule, value)
            (data.inputs.law == "uniform", "data.inputs.law", "uniform (a box)", data.inputs.law),
            (ms.activation == "relu", "model.activation", "relu", ms.activation),
            (ms.bias, "model.bias", "true (units relu(w . x + b))", ms.bias),
            (ms.train_output, "model.train_output", "true (units a relu(.))", ms.train_output),
            (ms.scaling == "mean_field", "model.scaling", "mean_field (f_N = mean)", ms.scaling),
            (ms.init.path is None, "model.init.path", "unset (drawn from the laws)", ms.init.path),
            (data.path is None, "data.path", "unset (y = f(x) is made here)", data.path),
            (data.population is None, "data.population", "unset", data.population),
            (bool(snap or not self.train_widths), "record.snapshot_every", "set", snap),
        ]
        for holds, key, rule, value in rules:
            if not holds:
                raise ConfigError(f"barron_rate needs `{key}` {rule}; got {value!r}.")


# ------------------------------------------------------------------------ the study


def plan(s: Study[BarronParams]) -> dict:
    p, cfg, inp = s.params, s.config, s.config.data.inputs
    box = {"low": inp.low, "high": inp.high, "dim": inp.dim, "seed": cfg.seed}
    sampling = {"measure": [c.model_dump() for c in p.measure], "widths": list(p.widths)}
    sampling |= {"eval_points": p.eval_points, "seeds": p.seeds, "std_factor": p.sample_std_factor}
    items: dict = {"sampling": Call(sampling_study, sampling | box)}
    if not p.train_widths:
        return items
    pi, rng = p.pi(), np.random.default_rng([cfg.seed, 0x7A])
    x = rng.uniform(inp.low, inp.high, (cfg.data.n_train, inp.dim))
    xt = rng.uniform(inp.low, inp.high, (max(cfg.data.n_test, 1), inp.dim))
    # named by content: another measure is another file, hence another sub-run config
    tag = f"{zlib.crc32(np.concatenate([x.ravel(), xt.ravel(), pi.f(x), pi.f(xt)])):08x}"
    data = {
        "data.path": str(s.input_file(f"train-{tag}", x=x, y=pi.f(x)).resolve()),
        "data.test_path": str(s.input_file(f"test-{tag}", x=xt, y=pi.f(xt)).resolve()),
        "data.target": None,
    }
    for n in p.train_widths:
        items[f"train_m{n}"] = Run(s.sub_config(f"train_m{n}", data | {"model.width": n}))
    return items


def analyze(s: Study[BarronParams], runs) -> dict:
    p, pi, inp = s.params, s.params.pi(), s.config.data.inputs
    sv = runs["sampling"].value
    err, ns = np.asarray(sv["err"]), np.asarray(p.widths, float)
    mean, se = err.mean(axis=0), err.std(axis=0, ddof=1) / math.sqrt(err.shape[0])
    big_p = pi.path_norm()
    stats = {
        "widths": list(p.widths),
        "mean_error": mean.tolist(),
        "se_error": se.tolist(),
        "expected_error": (sv["V"] / ns).tolist(),
        "bound": (p.bound_factor * big_p**2 / ns).tolist(),
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
        trained[n] = {
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
        errs = [trained[n]["err_train"] for n in p.train_widths]
        stats["trained"] = {f"m{n}": v for n, v in trained.items()}
        stats["trained_err_slope"] = loglog_fit(p.train_widths, errs).slope
        stats["_metrics"] = {n: runs[f"train_m{n}"].metrics for n in p.train_widths}
    return stats


def evaluate(s: Study[BarronParams], st: dict) -> dict:
    p, mean, se = s.params, np.asarray(st["mean_error"]), np.asarray(st["se_error"])
    big_p, b2, box = st["path_norm_pi"], st["B2_sq_pi"], st["input_sup_norm"]
    worst = float(np.max(mean / np.asarray(st["bound"])))
    z = float(np.max(np.abs(mean - np.asarray(st["expected_error"])) / se))
    checks = {
        "bound": check(
            worst,
            f"max_N mean err(N) / ({p.bound_factor:g} P(pi)^2 / N) < 1 (P(pi) = {big_p:.4g})",
            worst < 1.0,
        ),
        "slope": check(
            st["slope"],
            f"|slope + 1| <= {p.slope_tolerance:g}",
            abs(st["slope"] + 1.0) <= p.slope_tolerance,
        ),
        "expected_error": check(
            z, f"max_N |mean err(N) - V(pi)/N| / SE(N) <= 4 (V(pi) = {st['V_pi']:.4g})", z <= 4.0
        ),
        "premise": check(
            {"B2_sq_over_3P_sq": b2 / (3 * big_p**2), "input_sup_norm": box},
            "B2(pi)^2 <= 3 P(pi)^2 and ||x||_inf <= 1 (then E err <= V/N <= B2^2/N <= 3 P^2/N)",
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


# -------------------------------------------------------------------------- figures


def figures(s: Study[BarronParams], st: dict, runs) -> list:
    p, ns, err = s.params, np.asarray(st["widths"], float), st["_err"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for i, n in enumerate(ns):
        ax.scatter(np.full(err.shape[0], n), err[:, i], s=6, color="#7fb3d5", alpha=0.6, lw=0)
    ax.errorbar(ns, st["mean_error"], 2 * np.asarray(st["se_error"]), fmt="o-", label="sampled")
    ax.loglog(ns, st["bound"], "k--", lw=1.5, label=rf"bound ${p.bound_factor:g}\,P(\pi)^2/N$")
    ax.loglog(ns, st["B2_sq_pi"] / ns, ":", color="gray", lw=1.2, label=r"$B_2(\pi)^2/N$")
    ax.loglog(ns, st["expected_error"], "-", color="#c0392b", lw=1, label=r"$V(\pi)/N$ (sampled)")
    tw = np.asarray(p.train_widths, float)
    for key, mark in (("err_train_initial", "x"), ("err_test", "s")):
        ys = [r[key] for r in st.get("trained", {}).values()]
        ax.loglog(tw, ys, mark, color="#27ae60", label=key if ys else None)
    ax.set(xlabel="N (neurons)", ylabel=r"$\|f - f_N\|^2_{L^2(\mu)}$")
    ax.set_title(f"Barron approximation rate: sampled slope {st['slope']:.3f}")
    ax.legend(fontsize=8)
    paths = [save_figure(fig, s.figure_path("error_vs_n.png"))]
    if not st.get("trained"):
        return paths
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    for (name, r), mt in zip(st["trained"].items(), st["_metrics"].values(), strict=True):
        t, keep = np.asarray(r["path_norm_t"]), mt["t"] > 0
        ax1.semilogx(t[t > 0], np.asarray(r["path_norm"])[t > 0], "o-", ms=2, label=name)
        ax2.loglog(mt["t"][keep], 2 * mt["test_loss"][keep], label=f"{name}, test")
    ax1.axhline(st["path_norm_pi"], color="k", ls="--", lw=1, label=r"$P(\pi) \geq \|f\|_B$")
    ax1.set(xlabel="t", ylabel=r"path norm $\|\Theta\|_P$", title="path norm along training")
    ax2.set(xlabel="t", ylabel=r"$\|f_m - f\|^2$", title="L2 error of the trained networks")
    ax1.legend(fontsize=8), ax2.legend(fontsize=8)
    fig.tight_layout()
    return [*paths, save_figure(fig, s.figure_path("path_norm_training.png"))]


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
        CheckSpec("expected_error", "max_N |mean err(N) - V(pi)/N| / SE(N) <= 4"),
        CheckSpec("premise", "B2(pi)^2 <= 3 P(pi)^2 and ||x||_inf <= 1"),
        CheckSpec(
            "trained_below_rate",
            "max over trained N and mu in {train, test} of err_mu(f_N(T)) / (V_mu(pi)/N) < 1",
        ),
        CheckSpec("untrained_misses_rate", "min over N of err_train(f_N(0)) / (V(pi)/N) > 1"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
