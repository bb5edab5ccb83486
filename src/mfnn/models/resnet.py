r"""Deep residual networks as measures: the ensemble-ResNet and the wide-ResNet.

Both follow section 3 of "Mean field models for neural networks in teacher-student setting"
(3.1 Ensemble-ResNet, 3.2 Wide-ResNet), built on the vanilla ResNet with input x in R^d

    X^0 = x,   X^{l+1} = X^l + (1/L) sigma(theta^l X^l),   0 <= l < L,

theta^l in R^{d x d}, sigma applied entrywise. Outputs and targets are vectors in R^d, and
the risk is R = (1/2) E_x |f(x) - y(x)|^2.

- `EnsembleResNet`: N independent ResNets averaged, f(x) = (1/N) sum_j X^L_{theta_j}(x).
  A particle is a whole ResNet theta_j = (theta_j^0, ..., theta_j^{L-1}) in (R^{d x d})^L,
  so the measure lives on a space of dimension L d^2, and the velocity is
  -N dE/dtheta_j: the Wasserstein gradient flow of E(rho) = (1/2) |int X^L_theta rho(dtheta)
  - y|^2 on Theta^L.
- `WideResNet`: one path with N units per residual block,
  X^{l+1} = X^l + (1/(L N)) sum_j sigma(theta_j^l X^l); one measure rho^l per layer. The L N
  particles form one measure rho(theta, eps) = (1/L) sum_l rho^l(theta) delta_{l/L}(eps)
  on Theta x [0, 1] (each particle carries its depth eps = l/L), and the velocity of a layer-l
  particle is -L N dE/dtheta_j^l = -grad_theta dE/drho: the mean-field scaling with m = L N.
  Its ``solver`` is "euler" (the network above: one explicit Euler step per block) or a
  diffrax solver, which integrates the continuous-depth ODE (E, Ma and Wu 2019; Lu, Ma, Lu,
  Lu and Ying 2020)

      dz/ds = int sigma(theta z) rho_s(dtheta),  s in [0, 1],  z(0) = x,  f(x) = z(1),

  with rho_s = rho^{floor(s L)} (the same measure, piecewise constant in depth) to the
  tolerances ``rtol``/``atol``. The wide-ResNet is the Euler discretisation of that ODE; their
  gap is O(1/L).

The small-theta expansion of the wide-ResNet (the paper's eq. 9) is `WideResNet.expansion`:

    X_(1) = x + (1/L) sum_a S_a(x),                       S_a(x) = int sigma(theta x) rho^a,
    X_(2) = X_(1) + (1/L^2) sum_{b > a} int sigma'(theta x) * (theta S_a(x)) rho^b(dtheta),

the k-th term being a sum of binom(L, k) k-linear terms of weight L^-k (-> 1/k!). Their
energies E_(1), E_(2) are the objectives `mfnn.objectives.ExpandedRisk`. For sigma(0) = 0 the
error of X_(k) is O(|theta|^(k+1)).

Particle rows: ensemble (N, L d^2), row j = theta_j^0..theta_j^{L-1} flattened (C order);
wide (L N, d^2), row l N + j = theta_j^l flattened. Particle files: ensemble ``paths``
(N, L, d, d); wide ``layers`` (L, N, d, d) and ``depth`` (L,) = l / L.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float, Inputs, Key, Particles
from ..errors import ConfigError, did_you_mean
from .activations import ACTIVATIONS, get_activation
from .base import AbstractModel
from .scaling import Scaling

ODE_SOLVERS = ("tsit5", "dopri5", "dopri8", "heun", "midpoint", "ralston", "bosh3")
SOLVERS = ("euler", *ODE_SOLVERS)


def diffrax_solver(name: str):
    """The diffrax solver named ``name`` (one of `ODE_SOLVERS`): the continuous-depth
    ResNet's and the adaptive integrator's. diffrax is imported here, only when needed."""
    import diffrax

    return {
        "tsit5": diffrax.Tsit5,
        "dopri5": diffrax.Dopri5,
        "dopri8": diffrax.Dopri8,
        "heun": diffrax.Heun,
        "midpoint": diffrax.Midpoint,
        "ralston": diffrax.Ralston,
        "bosh3": diffrax.Bosh3,
    }[name]()


def _positive(value, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"`{field}` must be a positive integer; got {value!r}.")


def _mean_field_only(scaling, kind: str) -> Scaling:
    scaling = Scaling.of(scaling)
    if not scaling.mean_field:
        raise ConfigError(
            f"`model.scaling` must be 'mean_field' for `model.kind: {kind}` (the ResNet's 1/N "
            f"average is its mean-field limit); got {scaling.name!r}."
        )
    return scaling


def _check_rows(theta, dim: int, what: str) -> None:
    if theta.ndim != 2 or theta.shape[1] != dim:
        raise ConfigError(f"{what} must be rows (m, {dim}); got shape {tuple(theta.shape)}.")


class AbstractResNet(AbstractModel):
    """What the two ResNets share: input dimension d, depth L, activation, every
    coordinate trainable, and one law for every matrix entry at initialisation."""

    d: eqx.AbstractVar[int]
    depth: eqx.AbstractVar[int]
    activation: eqx.AbstractVar[str]

    def trainable_columns(self) -> np.ndarray:
        """Every column moves."""
        return np.arange(self.dim)

    def freeze(self, v):
        """Nothing is frozen in a ResNet."""
        return v

    def sigma(self, z):
        """The activation, entrywise."""
        return ACTIVATIONS[self.activation](z)


def _check_common(model) -> None:
    _positive(model.d, "model.d")
    _positive(model.depth, "model.depth")
    get_activation(model.activation)


_UNROLL_MAX_D = 8  # EnsembleResNet: float64 layer products unrolled up to this d


class EnsembleResNet(AbstractResNet):
    r"""The ensemble-ResNet: f(x) = (1/N) sum_j X^L_{theta_j}(x), a particle per ResNet.

        X^0 = x,  X^{l+1} = X^l + (1/L) sigma(theta_j^l X^l),  theta_j in (R^{d x d})^L,

    with velocity v_j = -N dE/dtheta_j (mean-field scaling; the limit is the Wasserstein
    gradient flow of E(rho) = (1/2) E_x |int X^L_theta(x) rho(dtheta) - y(x)|^2 on Theta^L).
    Rows (N, L d^2); blocks (L, d, d, N).

    Args:
        d: input (and output) dimension.
        depth: L >= 1.
        activation: any of `mfnn.models.ACTIVATIONS` (the paper's results need sigma
            smooth with sigma(0) = 0: tanh, arctan, erf).
        scaling: "mean_field" (the only one: the ensemble average is a mean-field limit).

    Example:
        >>> import jax.numpy as jnp
        >>> net = EnsembleResNet(d=1, depth=2, activation="tanh")
        >>> theta = jnp.zeros((3, net.dim))  # three ResNets with theta = 0 are the identity
        >>> net.predict(theta, jnp.array([[0.5]])).tolist()
        [[0.5]]
    """

    d: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    scaling: Scaling

    def __init__(self, d: int, depth: int, activation: str = "tanh", scaling="mean_field"):
        self.d, self.depth, self.activation = d, depth, activation
        self.scaling = _mean_field_only(scaling, "ensemble_resnet")

    def __check_init__(self):
        _check_common(self)

    @property
    def dim(self) -> int:
        """L d^2."""
        return self.depth * self.d * self.d

    def to_blocks(self, theta: Particles) -> Float[Array, "L d d m"]:
        """Rows (N, L d^2) -> (L, d, d, N): theta[j].reshape(L, d, d)[l] = blocks[l, :, :, j]."""
        return theta.T.reshape(self.depth, self.d, self.d, theta.shape[0])

    def from_blocks(self, blocks) -> Particles:
        return blocks.reshape(self.dim, blocks.shape[-1]).T

    def units_blocks(self, blocks, x: Inputs) -> Float[Array, "m d n"]:
        """X^L_{theta_j}(x_i) for every ResNet j, as (N, d, n): the layers in `lax.scan`,
        each a batch of N products (d, d) x (d, n) (the ResNet index leading and the inputs
        last: the layout XLA batches fastest on CPU, about 15 % faster than (N, n, d)).

        In float64 with d <= 8 the product sum_b p_ab z_b is written as d broadcast
        multiply-adds instead of a batched matrix product: XLA's CPU batched dot has no fast
        float64 path for (d, d) blocks, and the unrolled form was about 20 % faster there
        (slower in float32, which keeps the batched product; benchmarks/README.md)."""
        n, m = x.shape[0], blocks.shape[-1]
        inv_l = 1.0 / self.depth
        layers = jnp.moveaxis(blocks, -1, 1)  # (L, N, d, d), cheap next to the products
        unrolled = blocks.dtype == jnp.float64 and self.d <= _UNROLL_MAX_D

        def product(p, z):  # p (N, d, d), z (N, d, n) -> sum_b p_ab z_b, (N, d, n)
            if unrolled:
                return sum(p[:, :, b, None] * z[:, None, b, :] for b in range(self.d))
            return jnp.einsum("jab,jbn->jan", p, z)

        def layer(z, p):  # z (N, d, n), p (N, d, d): z_a + sigma(sum_b p_ab z_b) / L
            return z + inv_l * self.sigma(product(p, z)), None

        z0 = jnp.broadcast_to(x.T[None, :, :], (m, self.d, n)).astype(blocks.dtype)
        return jax.lax.scan(layer, z0, layers)[0]

    def units(self, theta: Particles, x: Inputs) -> Float[Array, "n m d"]:
        """X^L_{theta_j}(x_i) as (n, N, d)."""
        return jnp.transpose(self.units_blocks(self.to_blocks(theta), x), (2, 0, 1))

    def predict(self, theta: Particles, x: Inputs) -> Float[Array, "n d"]:
        """f(x) = (1/N) sum_j X^L_{theta_j}(x), shape (n, d)."""
        return jnp.mean(self.units_blocks(self.to_blocks(theta), x), axis=0).T

    def particle_arrays(self, theta: Particles) -> dict[str, np.ndarray]:
        """``paths`` (N, L, d, d): theta_j^l = paths[j, l]."""
        theta = np.asarray(theta)
        return {"paths": theta.reshape(theta.shape[0], self.depth, self.d, self.d)}

    def from_arrays(self, arrays: dict[str, np.ndarray], where: str, dtype) -> Particles:
        """Rows from ``paths`` (N, L, d, d)."""
        if "paths" not in arrays:
            kind = _kind_of_file(arrays)
            raise ConfigError(
                f"{where} has no array `paths` (N, L, d, d) of an ensemble-ResNet; it has "
                f"{sorted(arrays)}{kind}."
            )
        p = np.asarray(arrays["paths"])
        want = (self.depth, self.d, self.d)
        if p.ndim != 4 or p.shape[1:] != want:
            raise ConfigError(
                f"{where}: `paths` must have shape (N, {', '.join(map(str, want))}) for depth "
                f"L = {self.depth} and d = {self.d}; got {tuple(p.shape)}."
            )
        return jnp.asarray(p.reshape(p.shape[0], self.dim), dtype)

    def sample(self, key: Key, m: int, laws: dict[str, Any], dtype) -> Particles:
        """N ResNets, every matrix entry i.i.d. from ``laws["w"]``."""
        return laws["w"].sample(jax.random.fold_in(key, 1), (m, self.dim), dtype)


class WideResNet(AbstractResNet):
    r"""The wide-ResNet: N units per residual block, one measure rho^l per layer.

        X^0 = x,  X^{l+1} = X^l + (1/(L N)) sum_j sigma(theta_j^l X^l),  f(x) = X^L,

    velocity -L N dE/dtheta_j^l (mean field with m = L N particles; a particle carries its
    depth eps = l/L). ``solver`` "euler" is this network; a diffrax solver (tsit5, dopri5,
    ...) integrates the continuous-depth ODE dz/ds = int sigma(theta z) rho_s(dtheta),
    rho_s = rho^{floor(sL)}, adaptively to ``rtol``, ``atol`` (see the module docstring).
    ``order`` 1 or 2 makes `predict` the expansion X_(1) or X_(2) (`expansion`); 0 is exact.

    Rows (L N, d^2), row l N + j = theta_j^l; blocks (d, d, L N) (particles layer-major on
    the last axis).

    Example:
        >>> import jax.numpy as jnp
        >>> net = WideResNet(d=2, depth=4, activation="tanh")
        >>> theta = jnp.zeros((4 * 3, net.dim))  # N = 3 units per block
        >>> net.width_of(theta), net.predict(theta, jnp.array([[1.0, -1.0]])).tolist()
        (3, [[1.0, -1.0]])
    """

    d: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    scaling: Scaling
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    order: int = eqx.field(static=True)

    def __init__(
        self,
        d: int,
        depth: int,
        activation: str = "tanh",
        scaling="mean_field",
        solver: str = "euler",
        rtol: float = 1e-8,
        atol: float = 1e-10,
        order: int = 0,
    ):
        self.d, self.depth, self.activation = d, depth, activation
        self.scaling = _mean_field_only(scaling, "wide_resnet")
        self.solver, self.rtol, self.atol, self.order = solver, rtol, atol, order

    def __check_init__(self):
        _check_common(self)
        if self.solver not in SOLVERS:
            raise ConfigError(
                f"`model.solver` must be one of {list(SOLVERS)}; got {self.solver!r}. "
                f"{did_you_mean(str(self.solver), SOLVERS)}"
            )
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"`model.{name}` must be a number > 0; got {value!r}.")
        if self.order not in (0, 1, 2):
            raise ConfigError(f"the expansion order must be 0 (exact), 1 or 2; got {self.order!r}.")

    @property
    def dim(self) -> int:
        """d^2."""
        return self.d * self.d

    def width_of(self, theta: Particles) -> int:
        """N, the units per block, of rows (L N, d^2); a `ConfigError` if L does not divide
        the number of rows."""
        rows = int(theta.shape[0])
        if rows % self.depth:
            raise ConfigError(
                f"a wide-ResNet of depth {self.depth} needs L N rows; got {rows} rows."
            )
        return rows // self.depth

    def depths(self, rows: int) -> np.ndarray:
        """eps of each row: l / L for the rows of block l."""
        per = rows // self.depth
        return np.repeat(np.arange(self.depth) / self.depth, per)

    def to_blocks(self, theta: Particles) -> Float[Array, "d d m"]:
        """Rows (L N, d^2) -> (d, d, L N)."""
        return theta.T.reshape(self.d, self.d, theta.shape[0])

    def from_blocks(self, blocks) -> Particles:
        return blocks.reshape(self.dim, blocks.shape[-1]).T

    def layers(self, blocks) -> Float[Array, "L d dN"]:
        """The blocks as one matrix per layer, (L, d, d N): layers[l][b, a N + j] =
        theta_j^l[a, b], so that z @ layers[l] gives every (theta_j^l z)_a at once (one GEMM
        per layer)."""
        m = blocks.shape[-1]
        if m % self.depth:
            raise ConfigError(f"a wide-ResNet of depth {self.depth} needs L N particles; got {m}.")
        n = m // self.depth
        per_layer = jnp.transpose(blocks.reshape(self.d, self.d, self.depth, n), (2, 1, 0, 3))
        return per_layer.reshape(self.depth, self.d, self.d * n)

    def _apply(self, g: Float[Array, "d dN"], z: Float[Array, "n d"]) -> Float[Array, "n d N"]:
        """(theta_j z_i)_a for every unit j of a layer, as (n, d, N)."""
        return (z @ g).reshape(z.shape[0], self.d, -1)

    def field(self, g: Float[Array, "d dN"], z: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """int sigma(theta z) rho^l(dtheta) = (1/N) sum_j sigma(theta_j^l z), for each row z;
        ``g`` is one layer of `layers`."""
        return jnp.mean(self.sigma(self._apply(g, z)), axis=-1)

    def _flow(self, layers, x: Inputs) -> Float[Array, "n d"]:
        h = 1.0 / self.depth
        x = x.astype(layers.dtype)
        if self.solver == "euler":

            def step(z, p):
                return z + h * self.field(p, z), None

            return jax.lax.scan(step, x, layers)[0]
        import diffrax  # only the continuous-depth solvers need it

        solver = diffrax_solver(self.solver)
        term = diffrax.ODETerm(lambda s, z, p: self.field(p, z))
        controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)

        def block(z, p):  # rho_s is rho^l on [l/L, (l+1)/L): one solve per block
            sol = diffrax.diffeqsolve(
                term,
                solver,
                0.0,
                h,
                h,
                z,
                args=p,
                stepsize_controller=controller,
                max_steps=4096,
            )
            return sol.ys[-1], None

        return jax.lax.scan(block, x, layers)[0]

    def expansion(self, theta: Particles, x: Inputs, order: int) -> Float[Array, "n d"]:
        """X_(1) (order 1) or X_(2) (order 2) of the module docstring, shape (n, d)."""
        if order not in (1, 2):
            raise ConfigError(f"the expansion order must be 1 or 2; got {order!r}.")
        return self._expansion(self.layers(self.to_blocks(theta)), x, order)

    def _expansion(self, layers, x: Inputs, order: int):
        x = x.astype(layers.dtype)
        inv_l = 1.0 / self.depth
        sums = jax.vmap(lambda p: self.field(p, x))(layers)  # S_a(x): (L, n, d)
        first = x + inv_l * jnp.sum(sums, axis=0)
        if order == 1:
            return first
        before = jnp.cumsum(sums, axis=0) - sums  # sum_{a < b} S_a(x), (L, n, d)

        def second(g, c):  # (1/N) sum_j sigma'(theta_j x) * (theta_j c)
            z = self._apply(g, x)
            ds = jax.jvp(self.sigma, (z,), (jnp.ones_like(z),))[1]
            return jnp.mean(ds * self._apply(g, c), axis=-1)

        return first + inv_l**2 * jnp.sum(jax.vmap(second)(layers, before), axis=0)

    def predict(self, theta: Particles, x: Inputs) -> Float[Array, "n d"]:
        """f(x) = X^L(x) (or the expansion X_(order)), shape (n, d)."""
        layers = self.layers(self.to_blocks(theta))
        if self.order:
            return self._expansion(layers, x, self.order)
        return self._flow(layers, x)

    def expanded(self, order: int) -> WideResNet:
        """This network with `predict` = X_(order) (0: the exact network)."""
        return WideResNet(
            self.d,
            self.depth,
            self.activation,
            self.scaling,
            self.solver,
            self.rtol,
            self.atol,
            order,
        )

    def flow_norm(self, theta: Particles, p: float = 2.0) -> Float[Array, ""]:
        r"""exp(int_0^1 (int |theta|_F^p rho_s(dtheta))^(1/p) ds) = exp((1/L) sum_l
        (mean_j |theta_j^l|_F^p)^(1/p)): a D_p-type quantity of the flow-induced spaces of
        E, Ma and Wu (2019). For a 1-Lipschitz sigma it bounds the Lipschitz constant of
        x -> z(1) (Gronwall), which is how these norms control the network's complexity."""
        n = self.width_of(theta)
        norms = jnp.sqrt(jnp.sum(theta.reshape(self.depth, n, self.dim) ** 2, axis=-1))
        return jnp.exp(jnp.mean(jnp.mean(norms**p, axis=-1) ** (1.0 / p)))

    def particle_arrays(self, theta: Particles) -> dict[str, np.ndarray]:
        """``layers`` (L, N, d, d): theta_j^l = layers[l, j]; ``depth`` (L,) = l / L."""
        theta = np.asarray(theta)
        n = self.width_of(theta)
        return {
            "layers": theta.reshape(self.depth, n, self.d, self.d),
            "depth": np.arange(self.depth) / self.depth,
        }

    def from_arrays(self, arrays: dict[str, np.ndarray], where: str, dtype) -> Particles:
        """Rows from ``layers`` (L, N, d, d) (``depth`` is implied by the layer index)."""
        if "layers" not in arrays:
            kind = _kind_of_file(arrays)
            raise ConfigError(
                f"{where} has no array `layers` (L, N, d, d) of a wide-ResNet; it has "
                f"{sorted(arrays)}{kind}."
            )
        p = np.asarray(arrays["layers"])
        if p.ndim != 4 or p.shape[0] != self.depth or p.shape[2:] != (self.d, self.d):
            raise ConfigError(
                f"{where}: `layers` must have shape ({self.depth}, N, {self.d}, {self.d}) for "
                f"depth L = {self.depth} and d = {self.d}; got {tuple(p.shape)}."
            )
        return jnp.asarray(p.reshape(-1, self.dim), dtype)

    def sample(self, key: Key, m: int, laws: dict[str, Any], dtype) -> Particles:
        """L blocks of m = N units, every entry i.i.d. from ``laws["w"]``: rows (L N, d^2)."""
        return laws["w"].sample(jax.random.fold_in(key, 1), (self.depth * m, self.dim), dtype)


def _kind_of_file(arrays) -> str:
    """Which model a particle file was written by, from its array names."""
    for names, kind in (
        (("paths",), "an ensemble-ResNet"),
        (("layers",), "a wide-ResNet"),
        (("w1",), "a multilayer network"),
        (("w",), "a two-layer network"),
    ):
        if all(k in arrays for k in names):
            return f" (a particle file of {kind}: the teacher or init must be of the model's kind)"
    return ""
