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
import jax
import jax.numpy as jnp
from jax import lax

from .._typing import Array, Float, Particles, Scalar
from ..errors import ConfigError
from ..models.two_layer import TwoLayer
from ..targets import GaussianInputs, ModelTeacher, Teacher, UniformBox
from .base import AbstractObjective
from .kernels import get_kernel, quadrature_rule
from .risk import energy_velocity, nonnegative, weighted_risk, weighted_velocity

METHODS = ("closed_form", "quadrature", "monte_carlo")

PAIR_BYTES = 1 << 18
"""CPU budget of one (block, m) array of the blocked closed form (`pair_block`): 256 KiB.
Measured on 2 CPU cores (relu, d = 32): blocks of 8-16 rows ran the closed-form velocity
1.5-2x faster than the whole m x m kernel at m = 1024 and 4096, in float64 and float32."""

DEVICE_PAIR_BYTES = 1 << 30
"""The same budget off the CPU (GPU, TPU): 1 GiB, a memory bound only (not tuned there:
large blocks keep the device's kernels large)."""

MIN_PAIR_ROWS = 8
"""Fewest rows per block of `pair_block` (fewer make each block's GEMM a matrix-vector
product and the loop overhead count)."""


def pair_block(
    m: int, itemsize: int, budget: int | None = None, platform: str | None = None
) -> int:
    """Rows per block of the closed form's sums over particle pairs (a static choice).

    m (one block: the m x m kernel formed whole) when the (m, m) array fits ``budget``
    bytes (default `PAIR_BYTES` on the CPU, `DEVICE_PAIR_BYTES` elsewhere; ``platform``
    defaults to JAX's default backend), else the largest count whose (block, m) array
    does, at least `MIN_PAIR_ROWS`. Memory is O(block m) instead of O(m^2): at m = 10^5
    in float64 on the CPU, 8 rows, 6.4 MB per (block, m) array.

    Example:
        >>> pair_block(128, 8, platform="cpu"), pair_block(1024, 8, platform="cpu")
        (128, 32)
        >>> pair_block(10**5, 8, platform="cpu"), pair_block(10**5, 8, platform="gpu")
        (8, 1342)
    """
    if budget is None:
        platform = jax.default_backend() if platform is None else platform
        budget = PAIR_BYTES if platform == "cpu" else DEVICE_PAIR_BYTES
    if m * m * itemsize <= budget:
        return m
    return min(m, max(MIN_PAIR_ROWS, budget // (m * itemsize)))


def map_row_blocks(fn, rows: Array, block: int):
    """fn over blocks of ``block`` rows of ``rows`` (m, ...): the outputs' leading axes
    concatenated back to m (arrays with a leading block axis) or summed (scalars).
    A `lax.map` over the m // block full blocks, then the rows left (static shapes);
    one call of fn on all rows when block >= m."""
    m = rows.shape[0]
    if block >= m:
        return fn(rows)
    count = m // block
    head = lax.map(fn, rows[: count * block].reshape(count, block, *rows.shape[1:]))

    def merge(h, t=None):
        if h.ndim == 1:  # one scalar per block
            total = jnp.sum(h)
            return total if t is None else total + t
        h = h.reshape(count * block, *h.shape[2:])
        return h if t is None else jnp.concatenate([h, t], axis=0)

    if count * block == m:
        return jax.tree.map(merge, head)
    tail = fn(rows[count * block :])
    return jax.tree.map(merge, head, tail)


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
    teacher values and weights (sum 1), None for ``closed_form``; ``l2``; ``block``: rows
    per block of the closed form's sums over particle pairs, None for `pair_block`'s
    choice from (m, dtype).

    Blocked closed form: the m x m interaction is never formed whole. Since U is
    symmetric, the interaction term's gradient at particle j is
    m^(-2 gamma) sum_k grad_1 U(theta_j, theta_k), so each block J of rows gets its
    gradient from grad_{theta_J} [m^(-gamma) sum_{j in J} V(theta_j)
    + m^(-2 gamma) sum_{j in J, k} U(theta_j, theta_k)] with the theta_k held fixed,
    in O(block m) memory, and its share of the risk from the same sums. A single block
    (small m) takes the autodiff of the whole risk instead, as unblocked.
    """

    teacher: Teacher | ModelTeacher
    inputs: GaussianInputs | UniformBox
    x: Float[Array, "K d"] | None
    y: Float[Array, " K"] | None
    weights: Float[Array, " K"] | None
    method: str = eqx.field(static=True)
    nodes: int = eqx.field(static=True)
    l2: Array
    block: int | None = eqx.field(static=True)

    def __init__(
        self,
        teacher,
        inputs,
        x,
        y,
        weights,
        method="closed_form",
        nodes=0,
        l2=0.0,
        block: int | None = None,
    ):
        self.teacher, self.inputs, self.x, self.y, self.weights = teacher, inputs, x, y, weights
        self.method, self.nodes = method, nodes
        self.l2 = nonnegative(l2, "objective.l2")
        ok = block is None or (isinstance(block, int) and not isinstance(block, bool))
        if not ok or (block is not None and block < 1):
            raise ConfigError(
                f"`data.population.block` must be a positive integer or null; got {block!r}."
            )
        self.block = block

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
        block: int | None = None,
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
        return cls(teacher, inputs, x, y, weights, method, nodes, l2, block)

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

    def _block(self, m: int, dtype) -> int:
        return pair_block(m, jnp.dtype(dtype).itemsize) if self.block is None else self.block

    def _interaction_sums(self, model, theta: Particles, points: Particles) -> Float[Array, " k"]:
        """sum_j U(theta_j, points_l) for each row l of ``points``, over blocks of points
        (O(block m) memory)."""
        block = self._block(theta.shape[0], theta.dtype)
        return map_row_blocks(
            lambda q: jnp.sum(self.interaction(model, theta, q), axis=0), points, block
        )

    def _closed_form_gradient(self, model, theta: Particles) -> tuple[Particles, Scalar]:
        """(dR/dtheta_j for every row (m, D), R - R0), by blocks of rows (class docstring)."""
        m = theta.shape[0]
        s = model.output_scale(m)

        def block_terms(p):
            def h(p):
                pot = jnp.sum(self.potential(model, p))
                inter = jnp.sum(self.interaction(model, p, theta))
                return s * pot + s * s * inter, s * pot + 0.5 * s * s * inter

            return jax.grad(h, has_aux=True)(p)

        return map_row_blocks(block_terms, theta, self._block(m, theta.dtype))

    @eqx.filter_jit
    def decomposition(self, model, theta: Particles) -> dict[str, Scalar]:
        """R0, the potential term m^(-gamma) sum_j V(theta_j) (= int V dmu in mean_field),
        the interaction term (1/2) m^(-2 gamma) sum_jk U (= (1/2) int int U dmu dmu) and
        their sum, which is the risk."""
        s = model.output_scale(theta.shape[0])
        r0 = self.teacher_energy(theta.dtype)
        pot = s * jnp.sum(self.potential(model, theta))
        if self._block(theta.shape[0], theta.dtype) >= theta.shape[0]:
            inter = 0.5 * s * s * jnp.sum(self.interaction(model, theta, theta))
        else:
            inter = 0.5 * s * s * jnp.sum(self._interaction_sums(model, theta, theta))
        return {"R0": r0, "potential": pot, "interaction": inter, "risk": r0 + pot + inter}

    # ------------------------------------------------------------------- risk
    @eqx.filter_jit
    def risk(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """R(mu_m(theta)); on the batch (x, y) if one is given."""
        if x is not None:
            return weighted_risk(model, theta, x, y, None)
        if self.method == "closed_form":
            return self.decomposition(model, theta)["risk"]
        return weighted_risk(model, theta, self.x, self.y, self.weights)

    @eqx.filter_jit
    def first_variation(self, model, theta: Particles, points: Particles) -> Float[Array, " k"]:
        """Phi(theta') at each row of ``points``, with mu = mu_m(theta) held fixed."""
        m = theta.shape[0]
        if self.method == "closed_form":
            s = model.output_scale(m)
            inner = self.potential(model, points) + s * self._interaction_sums(model, theta, points)
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
        m = model.width(blocks)
        dtype = jax.tree.leaves(blocks)[0].dtype
        if self._block(m, dtype) >= m:  # one block: autodiff of the whole risk
            return energy_velocity(model, blocks, self.l2, lambda theta: self.risk(model, theta))
        theta = model.from_blocks(blocks)
        grad, part = self._closed_form_gradient(model, theta)
        # E = R + (lambda/2) mean_j |theta_j|^2: dE/dtheta_j = dR/dtheta_j + lambda theta_j / m
        grad = grad + self.l2.astype(theta.dtype) * theta / m
        v = model.to_blocks(-model.velocity_scale(m) * grad)
        return model.freeze(v), self.teacher_energy(theta.dtype) + part
