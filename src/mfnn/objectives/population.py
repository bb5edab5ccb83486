"""The population risk of a teacher-student problem (docs/theory.md sections 3 and 12).

Inputs x ~ P (N(0, I_d) or uniform on a box), target the teacher network
f*(x) = int phi(x; theta) d rho*(theta), rho* = sum_i alpha_i delta_{c_i}, and

    R(mu) = (1/2) E_x (f(x; mu) - f*(x))^2
          = R0 + int V dmu + (1/2) int int U dmu dmu          (mean_field)

with R0 = (1/2) E f*^2, V(theta) = -E[f*(x) phi(x; theta)] and
U(theta, theta') = E[phi(x; theta) phi(x; theta')]. For a general scaling gamma,
f = m^(-gamma) sum_j phi(x; theta_j) and the two integrals become
m^(-gamma) sum_j V(theta_j) and (1/2) m^(-2 gamma) sum_jk U(theta_j, theta_k).

Three ways to take E_x, one interface (`PopulationRisk`):

- ``closed_form``: E[sigma(u.x) sigma(v.x)] in closed form (ReLU and erf units without
  bias, Gaussian inputs; `mfnn.objectives.kernels`), O(m^2 d) per step, exact;
- ``quadrature``: a tensor Gauss rule (Hermite for Gaussian, Legendre for uniform inputs),
  any activation, d <= 3; the rule's error is estimated by a rule with twice the nodes;
- ``monte_carlo``: each step's velocity uses fresh samples (online SGD, `Online`); the
  risk the run records is a Monte Carlo estimate on a fixed evaluation sample.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._typing import Array, Float, Particles, Scalar
from ..errors import ConfigError
from ..models.two_layer import TwoLayer
from ..targets import GaussianInputs, ModelTeacher, Teacher, UniformBox
from .base import AbstractObjective
from .kernels import get_kernel, quadrature_rule
from .risk import energy_velocity, nonnegative, square_norms, weighted_velocity

METHODS = ("closed_form", "quadrature", "monte_carlo")


class PopulationRisk(AbstractObjective):
    r"""R(mu) = (1/2) E_x (f(x; mu) - f*(x))^2 for a teacher f*, with optional L2 weight.

        E(mu) = R(mu) + (lambda/2) int |theta|^2 dmu,

    first variation (any scaling gamma; = dE/dmu when gamma = 1)

        Phi(theta) = m^(gamma - 1) [V(theta) + m^(-gamma) sum_j U(theta_j, theta)]
                     + m^(2 gamma - 2) (lambda/2) |theta|^2
                   = m^(gamma - 1) E_x[(f(x) - f*(x)) phi(x; theta)] + ...,

    and velocity v = -grad Phi = -m^(2 gamma - 1) dE/dtheta_j, as for `EmpiricalRisk`.
    A batch (x, y) passed to `velocity` or `risk` (online SGD) is used as an empirical
    sample instead.

    Build it with `PopulationRisk.make`. Fields: ``teacher``; ``method``; ``x``, ``y``,
    ``weights``: the quadrature nodes (or the Monte Carlo evaluation sample), their
    teacher values and weights (sum 1), None for ``closed_form``; ``l2``.
    """

    teacher: Teacher | ModelTeacher
    inputs: GaussianInputs | UniformBox
    x: Float[Array, "K d"] | None
    y: Float[Array, " K"] | None
    weights: Float[Array, " K"] | None
    method: str = eqx.field(static=True)
    nodes: int = eqx.field(static=True)
    l2: Array

    def __init__(self, teacher, inputs, x, y, weights, method="closed_form", nodes=0, l2=0.0):
        self.teacher, self.inputs, self.x, self.y, self.weights = teacher, inputs, x, y, weights
        self.method, self.nodes = method, nodes
        self.l2 = nonnegative(l2, "objective.l2")

    @classmethod
    def make(
        cls,
        teacher: Teacher,
        inputs: GaussianInputs | UniformBox,
        method: str = "closed_form",
        *,
        model=None,
        nodes: int = 24,
        eval_samples: int = 16384,
        key=None,
        dtype=jnp.float64,
        l2: float = 0.0,
    ) -> PopulationRisk:
        """Validate and build. ``model`` (the student) is checked against the method."""
        if method not in METHODS:
            raise ConfigError(
                f"`data.population.method` must be one of {list(METHODS)}; got {method!r}."
            )
        d = teacher.dim
        if d != inputs.dim:
            raise ConfigError(
                f"the teacher's neurons have dimension {d} but `data.population.dim` is "
                f"{inputs.dim}; they must agree (`data.teacher` is a network on R^dim)."
            )
        x = y = weights = None
        if method == "closed_form":
            if not isinstance(teacher, Teacher):
                raise ConfigError(
                    "`data.population.method: closed_form` is the kernel of a two-layer teacher; "
                    f"this teacher is a {type(teacher.model).__name__}. Use `quadrature` "
                    "(dim <= 3) or `monte_carlo`."
                )
            get_kernel(teacher.activation)
            if not isinstance(inputs, GaussianInputs) or inputs.std != 1.0:
                raise ConfigError(
                    "`data.population.method: closed_form` needs Gaussian inputs N(0, I) "
                    "(`data.population.inputs: gaussian`); for uniform inputs use "
                    "`quadrature` (d <= 3) or `monte_carlo`."
                )
            if bool(jnp.any(teacher.b != 0)):
                raise ConfigError(
                    "`data.population.method: closed_form` supports teachers without bias; "
                    "`data.teacher.b` is non-zero. Use `quadrature` (d <= 3) or `monte_carlo`."
                )
            if model is not None:
                if not isinstance(model, TwoLayer):
                    raise ConfigError(
                        "`data.population.method: closed_form` is the kernel of a two-layer "
                        f"unit; got a {type(model).__name__}. Use `quadrature` or `monte_carlo`."
                    )
                if model.bias:
                    raise ConfigError(
                        "`data.population.method: closed_form` supports students without "
                        "bias; set `model.bias: false` or use `quadrature` (d <= 3) or "
                        "`monte_carlo`."
                    )
                if model.activation != teacher.activation:
                    raise ConfigError(
                        f"`data.population.method: closed_form` needs the student and the "
                        f"teacher to share the activation; got `model.activation` "
                        f"{model.activation!r} and teacher {teacher.activation!r}."
                    )
                if model.activation_scale != teacher.activation_scale:
                    raise ConfigError(
                        "`data.population.method: closed_form` needs the student and the "
                        "teacher to share the activation's input scale; got "
                        f"`model.activation_scale` {model.activation_scale:g} and "
                        f"`data.teacher.activation_scale` {teacher.activation_scale:g}."
                    )
        elif method == "quadrature":
            law = "gaussian" if isinstance(inputs, GaussianInputs) else "uniform"
            box = (inputs.low, inputs.high) if isinstance(inputs, UniformBox) else (-1.0, 1.0)
            x, weights = quadrature_rule(law, d, nodes, dtype, *box)
            if law == "gaussian":
                x = inputs.std * x
        else:
            if key is None:
                raise ConfigError("`monte_carlo` needs a PRNG key for its evaluation sample.")
            if eval_samples < 1:
                raise ConfigError(
                    f"`data.population.eval_samples` must be >= 1; got {eval_samples!r}."
                )
            x = inputs.sample(key, eval_samples, dtype)
            weights = jnp.full((eval_samples,), 1.0 / eval_samples, dtype)
        if x is not None:
            y = teacher(x).astype(dtype)
        return cls(teacher, inputs, x, y, weights, method, nodes, l2)

    # ------------------------------------------------------------ expectations
    def _teacher_mass(self, dtype) -> Float[Array, " k"]:
        return (self.teacher.alpha * self.teacher.a).astype(dtype)

    def _kernel(self, u, v):
        """E_x[sigma_s(u . x) sigma_s(v . x)] = K(s u, s v), s the shared activation scale."""
        s = self.teacher.activation_scale
        return get_kernel(self.teacher.activation)(s * u, s * v)

    @eqx.filter_jit
    def interaction(self, model, p: Particles, q: Particles) -> Float[Array, "k l"]:
        """U(p_i, q_j) = E_x[phi(x; p_i) phi(x; q_j)]."""
        if self.method == "closed_form":
            ap, wp, _ = model.split(p)
            aq, wq, _ = model.split(q)
            return ap[:, None] * self._kernel(wp, wq) * aq[None, :]
        fp, fq = model.features(p, self.x), model.features(q, self.x)
        return fp.T @ (self.weights[:, None] * fq)

    @eqx.filter_jit
    def potential(self, model, points: Particles) -> Float[Array, " k"]:
        """V(theta) = -E_x[f*(x) phi(x; theta)]."""
        if self.method == "closed_form":
            a, w, _ = model.split(points)
            tw = self.teacher.w.astype(points.dtype)
            return -a * (self._kernel(w, tw) @ self._teacher_mass(points.dtype))
        return -(self.weights * self.y) @ model.features(points, self.x)

    def teacher_energy(self, dtype=jnp.float64) -> Scalar:
        """R0 = (1/2) E f*^2."""
        if self.method == "closed_form":
            tw = self.teacher.w.astype(dtype)
            ta = self._teacher_mass(dtype)
            return 0.5 * ta @ self._kernel(tw, tw) @ ta
        return 0.5 * jnp.sum(self.weights * self.y**2)

    @eqx.filter_jit
    def decomposition(self, model, theta: Particles) -> dict[str, Scalar]:
        """R0, the potential term m^(-gamma) sum_j V(theta_j) (= int V dmu in mean_field),
        the interaction term (1/2) m^(-2 gamma) sum_jk U (= (1/2) int int U dmu dmu) and
        their sum, which is the risk."""
        s = model.output_scale(theta.shape[0])
        r0 = self.teacher_energy(theta.dtype)
        pot = s * jnp.sum(self.potential(model, theta))
        inter = 0.5 * s * s * jnp.sum(self.interaction(model, theta, theta))
        return {"R0": r0, "potential": pot, "interaction": inter, "risk": r0 + pot + inter}

    # ------------------------------------------------------------------- risk
    @eqx.filter_jit
    def risk(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """R(mu_m(theta)); on the batch (x, y) if one is given."""
        if x is not None:
            return 0.5 * jnp.mean(square_norms(model.predict(theta, x) - y))
        if self.method == "closed_form":
            return self.decomposition(model, theta)["risk"]
        return 0.5 * jnp.sum(self.weights * square_norms(model.predict(theta, self.x) - self.y))

    @eqx.filter_jit
    def first_variation(self, model, theta: Particles, points: Particles) -> Float[Array, " k"]:
        """Phi(theta') at each row of ``points``, with mu = mu_m(theta) held fixed."""
        m = theta.shape[0]
        if self.method == "closed_form":
            s = model.output_scale(m)
            inner = self.potential(model, points) + s * jnp.sum(
                self.interaction(model, theta, points), axis=0
            )
        else:  # E_x[(f - f*) phi(x; .)] on the nodes: O((m + k) K), not the k x m kernel
            residual = self.weights * (model.predict(theta, self.x) - self.y)
            inner = residual @ model.features(points, self.x)
        value = model.scaling.field(m) * inner
        l2 = self.l2.astype(points.dtype)
        return value + model.scaling.confinement(m) * 0.5 * l2 * jnp.sum(points**2, -1)

    def quadrature_error(self, model, theta: Particles) -> Scalar:
        """|R_q - R_2q|: the risk by this rule against a rule with twice the nodes per
        dimension (quadrature only)."""
        if self.method != "quadrature":
            raise ConfigError("`quadrature_error` is defined for `method: quadrature` only.")
        finer = PopulationRisk.make(
            self.teacher, self.inputs, "quadrature", nodes=2 * self.nodes, dtype=theta.dtype
        )
        return jnp.abs(self.risk(model, theta) - finer.risk(model, theta))

    # --------------------------------------------------------------- velocity
    def velocity_blocks(self, model, blocks, x=None, y=None):
        """(v, R) in the block layout: v = -grad Phi at every particle (see the class
        docstring); on the batch (x, y) of online SGD if one is given."""
        if x is not None:  # a batch: online SGD on fresh samples
            return weighted_velocity(model, blocks, x, y, None, self.l2)
        if self.method != "closed_form":
            return weighted_velocity(model, blocks, self.x, self.y, self.weights, self.l2)
        return energy_velocity(model, blocks, self.l2, lambda theta: self.risk(model, theta))
