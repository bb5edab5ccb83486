"""The YAML config: schema, validation with one-paragraph errors, and `--set` overrides.

Every key has a default; unknown keys are errors that suggest the closest valid key.
See `examples/` for complete configs. The contract other tools read::

    seed: 0
    dtype: float64            # or float32
    model:  {width: 512, activation: relu, scaling: mean_field, bias: true,
             init: {path: particles.npz}}     # or a law per block
    data:   {path: data.npz}                  # or a named target with inputs, n_train, n_test
    dynamics: {kind: gradient_flow, dt: 0.05, steps: 2000}   # or kind: sgd
    record: {every: 10}
"""

from __future__ import annotations

import copy
import math
import os
import re
import reprlib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import pydantic
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .errors import ConfigError, closest, did_you_mean

# The solvers of `mfnn.models.resnet` (ODE_SOLVERS, SOLVERS there), named here so that the
# schema loads without JAX; tests/test_cold_start.py checks that the two lists agree.
ODE_SOLVERS = ("tsit5", "dopri5", "dopri8", "heun", "midpoint", "ralston", "bosh3")
SOLVERS = ("euler", *ODE_SOLVERS)


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: ``1e-7`` is a number (YAML 1.1 wants ``1.0e-7``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    """Parse YAML text (safe; YAML 1.2 floats such as ``1e-7``).

    Every failure is a `yaml.YAMLError`, including the two that PyYAML lets through: an
    integer of more than 4300 digits (Python's int conversion limit) and nesting deeper
    than Python's recursion limit.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except (ValueError, RecursionError) as exc:
        what = "nesting too deep" if isinstance(exc, RecursionError) else str(exc)
        raise yaml.YAMLError(f"unreadable value ({what})") from None


# Upper bound of every count (width, steps, sizes, dimensions): JAX indexes arrays and
# counts steps with 32-bit integers when float64 is off. What fits in memory is checked
# after validation, against the machine (`mfnn.budget`).
MAX_COUNT = 2**31 - 1
# Seeds are [0, 2^32): without float64 JAX keeps 32 bits of the seed (2^32 would give the
# key of 0), and negative seeds give different keys with and without float64.
SEED_LIMIT = 2**32


def _count(default=..., *, gt: int | None = None, ge: int | None = None, **kw):
    """An integer field in [1 or 0, `MAX_COUNT`]."""
    return Field(default, gt=gt, ge=ge, le=MAX_COUNT, **kw)


def _is_int_field(annotation) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return int in args and bool not in args


class _Strict(BaseModel):
    """The base of every config section: unknown keys are errors, every float is finite
    (NaN and +-inf refused; a field that means "no limit" by inf says so itself), and an
    integer field refuses ``true``/``false`` (YAML's ``yes`` would otherwise read as 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_int(cls, v, info):
        if isinstance(v, bool) and _is_int_field(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"must be an integer, not a boolean; got {v!r}")
        return v


NAME_MAX, PATH_MAX = 255, 4095  # bytes of one folder name and of a whole path (Linux)


def _check_path(v: str | None) -> str | None:
    """A file path field: no NUL character, no folder name over `NAME_MAX` bytes, at most
    `PATH_MAX` bytes in all (what the operating system can open)."""
    if v is None:
        return v
    parts = v.encode("utf-8", "surrogateescape").split(b"/")
    if (
        "\x00" in v
        or not v.strip()
        or len(v.encode("utf-8", "surrogateescape")) > PATH_MAX
        or (max(len(p) for p in parts) > NAME_MAX)
    ):
        raise ValueError(
            f"must be a file path: not empty, no NUL character, each folder name at most "
            f"{NAME_MAX} bytes and {PATH_MAX} bytes in all; got {_shown(v)}"
        )
    return v


FilePath = Annotated[str, AfterValidator(_check_path)]


class LawSpec(_Strict):
    """Initial law of one block: gaussian(mean, std), uniform(low, high) or constant(value)."""

    law: Literal["gaussian", "uniform", "constant"] = "gaussian"
    mean: float = 0.0
    std: float = Field(1.0, ge=0)
    low: float = -1.0
    high: float = 1.0
    value: float = 1.0

    @model_validator(mode="after")
    def _check(self):
        if self.law == "uniform" and not self.high > self.low:
            raise ValueError(
                f"a uniform law needs `low` < `high`; got low={self.low}, high={self.high}"
            )
        return self


class InitSpec(_Strict):
    """Initial particles: a particle file, or a law per block (a, w, b)."""

    path: FilePath | None = None
    a: LawSpec = LawSpec(law="gaussian", std=1.0)
    w: LawSpec = LawSpec(law="gaussian", std=1.0)
    b: LawSpec = LawSpec(law="uniform", low=-1.0, high=1.0)
    # the true middle weights W_l of `model.kind: multilayer` (default: the law of w)
    hidden: LawSpec | None = None
    # antisymmetric pairs: m/2 draws and their mirrors (-a, w, b), so that f_0 = 0
    paired: bool = False


def _check_activation(v: str) -> str:
    """An activation name of `mfnn.models.activations.ACTIVATIONS`."""
    from .models.activations import ACTIVATIONS  # JAX: only when a config is validated

    if v not in ACTIVATIONS:
        hint = did_you_mean(v if len(v) <= 100 else "", ACTIVATIONS)  # difflib is quadratic
        raise ValueError(f"must name a known activation; got {_shown(v)}. {hint}")
    return v


Activation = Annotated[str, AfterValidator(_check_activation)]


KINDS = ("two_layer", "ensemble_resnet", "wide_resnet", "multilayer")
DEEP_KINDS = KINDS[1:]


class ModelSpec(_Strict):
    """The network. ``kind``: two_layer (a, w, b units), ensemble_resnet (``width`` = N
    ResNets of ``depth`` L), wide_resnet (``width`` = N units in each of ``depth`` L blocks;
    ``solver`` euler is the network, a diffrax solver its continuous-depth ODE, to ``rtol``,
    ``atol``) or multilayer (``depth`` = H >= 2 hidden layers of ``width`` N units)."""

    kind: Literal["two_layer", "ensemble_resnet", "wide_resnet", "multilayer"] = "two_layer"
    depth: int | None = _count(None, gt=0)
    solver: Literal[SOLVERS] = "euler"  # type: ignore[valid-type]
    rtol: float = Field(1e-8, gt=0)
    atol: float = Field(1e-10, gt=0)
    width: int | None = _count(512, gt=0)
    activation: Activation = "relu"
    # s of sigma(s z) (two_layer): erf at 1/sqrt 2 is the erf(z/sqrt 2) of Saad and Solla
    activation_scale: float = Field(1.0, gt=0)
    scaling: Literal["mean_field", "ntk", "general"] = "mean_field"
    gamma: float | None = Field(None, ge=0.5, le=1.0)
    # the lazy-training output factor of Chizat, Oyallon and Bach (2019): alpha f, time / alpha^2
    alpha: float = Field(1.0, gt=0)
    bias: bool = True
    train_output: bool = True
    # the blocks that move (None: every block); at least one
    trainable: list[Literal["a", "w", "b"]] | None = Field(None, min_length=1)
    init: InitSpec = InitSpec()

    @model_validator(mode="after")
    def _gamma(self):
        if self.scaling == "general" and self.gamma is None:
            raise ValueError("`model.scaling: general` needs `model.gamma` in [0.5, 1]")
        return self


class InputsSpec(_Strict):
    """Input law: uniform on [low, high]^dim, or gaussian N(0, std^2 I_dim)."""

    law: Literal["uniform", "gaussian"] = "uniform"
    dim: int = _count(1, gt=0)
    low: float = -1.0
    high: float = 1.0
    std: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.law == "uniform" and not self.high > self.low:
            raise ValueError(f"uniform inputs need `low` < `high`; got {self.low}, {self.high}")
        return self


class TeacherSpec(_Strict):
    """Teacher rho* = sum_i alpha_i delta_{c_i}: inline arrays or an npz file."""

    path: FilePath | None = None
    w: list[list[float]] | None = None
    alpha: list[float] | None = None
    a: list[float] | None = None
    b: list[float] | None = None
    activation: Activation | None = None
    activation_scale: float | None = Field(None, gt=0)  # default the student's
    # a deep teacher (model.kind other than two_layer) drawn at random: `width` particles of
    # the student's kind (1: a vanilla ResNet), entries N(0, std^2) (default std 1), of depth
    # `depth` (default the student's)
    width: int | None = _count(None, gt=0)
    std: float | None = Field(None, gt=0)
    depth: int | None = _count(None, gt=0)


class PopulationSpec(_Strict):
    """The population risk: no data set, E_x over the input law (docs/theory.md section 3).

    method: closed_form (relu/erf units without bias, gaussian inputs), quadrature
    (any activation, dim <= 3; ``nodes`` per dimension) or monte_carlo (``samples``
    fresh inputs per step, the recorded risk on ``eval_samples`` fixed inputs).
    """

    inputs: Literal["gaussian", "uniform"] = "gaussian"
    dim: int = _count(2, gt=0)
    method: Literal["closed_form", "quadrature", "monte_carlo"] = "closed_form"
    nodes: int = Field(24, gt=0, le=150)  # the error estimate uses 2 nodes <= 300
    samples: int = _count(1024, gt=0)
    eval_samples: int = _count(16384, gt=0)
    low: float = -1.0
    high: float = 1.0

    @model_validator(mode="after")
    def _check(self):
        if self.method == "quadrature" and self.dim > 3:
            raise ValueError(
                f"quadrature is for dim <= 3 (a tensor rule has nodes^dim points); got dim "
                f"{self.dim}: use `method: closed_form` (relu/erf without bias) or "
                "`method: monte_carlo`"
            )
        if self.method == "closed_form" and self.inputs != "gaussian":
            raise ValueError(
                "`method: closed_form` needs `inputs: gaussian`; for uniform inputs use "
                "`quadrature` (dim <= 3) or `monte_carlo`"
            )
        if self.inputs == "uniform" and not self.high > self.low:
            raise ValueError(f"uniform inputs need `low` < `high`; got {self.low}, {self.high}")
        return self


class DataSpec(_Strict):
    path: FilePath | None = None
    population: PopulationSpec | None = None
    test_path: FilePath | None = None
    target: Literal["sign", "teacher", "zero"] | None = "sign"
    teacher: TeacherSpec | None = None
    inputs: InputsSpec = InputsSpec()
    n_train: int = _count(256, gt=0)
    n_test: int = _count(256, ge=0)
    noise: float = Field(0.0, ge=0)


class DomainSpec(_Strict):
    """A bounded parameter domain; particles leaving it are reflected (docs/theory.md s. 11)."""

    kind: Literal["ball", "box"] = "ball"
    radius: float = Field(1.0, gt=0)
    low: float = -1.0
    high: float = 1.0

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "box" and not self.high > self.low:
            raise ValueError(f"a box needs `low` < `high`; got {self.low}, {self.high}")
        return self


class ObjectiveSpec(_Strict):
    """The energy: the risk + (l2/2) int |theta|^2 dmu; ``expansion`` 1 or 2 replaces a
    wide-ResNet's X^L by its small-theta expansion X_(1) or X_(2)
    (`mfnn.objectives.ExpandedRisk`)."""

    l2: float = Field(0.0, ge=0)
    expansion: Literal[1, 2] | None = None


class LangevinSpec(_Strict):
    """Mean-field Langevin noise sqrt(2/beta(t)) dB (docs/theory.md sections 7-9).

    schedule: constant, log (beta (1 + rate log(1 + t))), geometric
    (min(beta growth^(t/period), beta_max)) or piecewise (``values`` from ``times``);
    drift_scale s multiplies the drift (the McKean-Vlasov dynamics of Tzen and Raginsky 2020:
    s = beta_e, beta = 2/tau).
    """

    beta: float = Field(gt=0)
    schedule: Literal["constant", "log", "geometric", "piecewise"] = "constant"
    rate: float = 1.0
    growth: float = 2.0
    period: float = 1.0
    beta_max: float = Field(float("inf"), allow_inf_nan=True)  # inf: no cap
    values: list[float] = []
    times: list[float] = []
    drift_scale: float = Field(1.0, gt=0)

    @field_validator("beta_max")
    @classmethod
    def _beta_max(cls, v):
        """``beta_max`` is the one float that may be infinite (+inf: no cap); never NaN."""
        if not v > 0:
            raise ValueError(f"must be a positive number or .inf (no cap); got {v!r}")
        return v


class BirthDeathSpec(_Strict):
    """Birth-death jumps after each transport step, rate alpha (docs/theory.md section 10)."""

    rate: float = Field(1.0, ge=0)


MAX_CELLS = 2**22  # a 2048 x 2048 grid


class GridSpec(_Strict):
    """The grid of `dynamics.kind: pde` (`mfnn.pde`): ``cells`` per axis (one entry per
    coordinate of a particle: D = 1 or 2), the box ``low``..``high`` (a number for every
    axis, or one per axis; default the `dynamics.domain` box, else [-4, 4]), the ``flux``
    (upwind: first order; muscl: second order, minmod-limited), the time ``scheme``
    (explicit; imex: implicit diffusion, no dt <= h^2/(2D) limit) and ``boundary_tol``, the
    largest mass fraction allowed in the outer cells of a grid that truncates R^D."""

    cells: int | list[int] = Field(256)
    low: float | list[float] | None = None
    high: float | list[float] | None = None
    flux: Literal["upwind", "muscl"] = "muscl"
    scheme: Literal["explicit", "imex"] = "explicit"
    boundary_tol: float = Field(1e-6, gt=0, lt=1)

    @field_validator("cells")
    @classmethod
    def _cells(cls, v):
        cells = [v] if isinstance(v, int) else list(v)
        if not 1 <= len(cells) <= 2 or any(c < 4 for c in cells) or math.prod(cells) > MAX_CELLS:
            raise ValueError(
                f"must be 1 or 2 numbers of cells per axis, each >= 4, at most {MAX_CELLS} "
                f"cells in all; got {v!r}"
            )
        return v


class DynamicsSpec(_Strict):
    """How the particles move. ``integrator`` euler, heun, euler_maruyama (noise), or
    adaptive: each step of size ``dt`` solved to ``rtol``/``atol`` by the embedded
    Runge-Kutta pair ``solver`` (diffrax) in at most ``max_steps`` internal steps
    (`mfnn.integrators.Adaptive`); ``rtol``, ``atol``, ``solver`` and ``max_steps`` are
    options of the adaptive integrator only."""

    kind: Literal["gradient_flow", "sgd", "pde"] = "gradient_flow"
    integrator: Literal["euler", "heun", "euler_maruyama", "adaptive"] = "euler"
    rtol: float = Field(1e-6, gt=0)
    atol: float = Field(1e-9, gt=0)
    solver: Literal[ODE_SOLVERS] = "tsit5"  # type: ignore[valid-type]
    max_steps: int = _count(100_000, gt=0)
    langevin: LangevinSpec | None = None
    birth_death: BirthDeathSpec | None = None
    dt: float = Field(0.05, gt=0)
    steps: int = _count(2000, gt=0)
    batch_size: int | None = _count(None, gt=0)
    sampling: Literal["epochs", "online"] = "epochs"
    domain: DomainSpec | None = None
    grid: GridSpec | None = None  # the grid of `kind: pde`

    @model_validator(mode="after")
    def _sgd(self):
        if self.kind == "sgd" and self.batch_size is None:
            raise ValueError("`dynamics.kind: sgd` needs `dynamics.batch_size` (e.g. 32)")
        return self


class W2RecordSpec(_Strict):
    """W2 metrics of the recorder (`mfnn.recorder.W2Monitor`): to the initial measure, to
    the teacher measure rho*, to a reference run's particles at the same time."""

    initial: bool = False
    teacher: bool = False
    reference: FilePath | None = None  # a run directory with snapshots (record.snapshot_*)
    method: Literal["exact", "sliced"] = "exact"
    projections: int = _count(128, gt=0)  # directions of the sliced estimate


class RecordSpec(_Strict):
    every: int = _count(10, gt=0)
    # k of the kNN entropy of a Langevin run (None: 1 when `dynamics.langevin` is set; 0: off)
    entropy_k: int | None = _count(None, ge=0)
    snapshot_every: int | None = _count(None, gt=0)
    # K snapshots, t = 0 and the last step included, at steps spaced linearly or
    # logarithmically on the record grid (`mfnn.trajectory.snapshot_steps`); excludes
    # `snapshot_every`
    snapshot_count: int | None = _count(None, ge=2)
    snapshot_spacing: Literal["linear", "log"] = "linear"
    chunk: int | None = _count(None, gt=0)
    w2: W2RecordSpec | None = None
    # p of the wide-ResNet's flow norm exp(int (E_rho_s |theta|^p)^(1/p) ds) (None: 2 for a
    # wide_resnet, off otherwise; 0: off)
    flow_norm: float | None = Field(None, ge=0)
    # the teacher-student overlaps Q = w w^T, R = w w*^T, T = w* w*^T (`OverlapMonitor`)
    overlaps: bool = False


MAX_PARAM_NODES = 100_000  # values in `experiment.params`, aliases expanded


class ExperimentSpec(_Strict):
    """Which named experiment runs (``mfnn experiments`` lists them) and its parameters.

    ``params`` is validated by the experiment's own typed model (`mfnn.study.Params`);
    errors name `experiment.params.<key>`. ``mfnn experiments NAME`` lists the keys, their
    types and defaults.
    """

    name: str | None = None
    params: dict[str, Any] = {}

    @field_validator("params")
    @classmethod
    def _params_size(cls, v):
        """At most `MAX_PARAM_NODES` values in all, counted as written out: YAML aliases
        can make a few lines stand for billions of values, which writing the run's
        config.yaml would expand."""
        stack, seen = [v], 0
        while stack:
            node = stack.pop()
            seen += 1
            if seen > MAX_PARAM_NODES:
                raise ValueError(
                    f"holds more than {MAX_PARAM_NODES} values (counting each YAML alias as "
                    "the copy it stands for); an experiment's params are a few numbers and "
                    "short lists"
                )
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list | tuple):
                stack.extend(node)
        return v


MAX_NAME = 100  # leaves room for the '-quick-YYYYmmdd-HHMMSS' suffix in 255 bytes


class GuardSpec(_Strict):
    """The divergence guard (`mfnn.guard.Guard`): a record with a non-finite loss, energy
    or dissipation, a loss above ``loss_growth`` x max(initial loss, 1), or a particle
    coordinate above ``theta_limit`` (default ``theta_growth`` x max(initial
    max |theta|, 1)) ends the run as ``diverged``."""

    loss_growth: float = Field(1e6, gt=1)
    theta_growth: float = Field(1e6, gt=1)
    theta_limit: float | None = Field(None, gt=0)


class Config(_Strict):
    seed: int = 0
    dtype: Literal["float64", "float32"] = "float64"
    name: str | None = None
    experiment: ExperimentSpec = ExperimentSpec()
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    dynamics: DynamicsSpec = DynamicsSpec()
    record: RecordSpec = RecordSpec()
    guard: GuardSpec = GuardSpec()
    # the particles split over this many devices (`mfnn.sharding`): plumbing, not physics,
    # so left out of the dump at its default 1 (configs and run directories of before match)
    devices: int | Literal["all"] = Field(1, exclude_if=lambda v: v == 1)
    mfnn_version: str | None = None

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, v):
        """`devices` an integer in [1, `MAX_COUNT`] or "all" (the machine's count is
        checked at build)."""
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)  # `--set devices=2` gives the integer; a quoted "2" in YAML too
        if v == "all" or (type(v) is int and 1 <= v <= MAX_COUNT):
            return v
        raise ValueError(
            f'`devices` must be a positive integer or "all" (how many devices share the '
            f"particles); got {_shown(v)}. Use `devices: 1` (the default) for one device, "
            "`devices: all` for every device."
        )

    @field_validator("seed")
    @classmethod
    def _seed(cls, v):
        """`seed` in [0, 2^32): the PRNG key's honest range (see `SEED_LIMIT`)."""
        if not 0 <= v < SEED_LIMIT:
            raise ValueError(
                f"`seed` must be an integer in [0, 2^32 - 1 = {SEED_LIMIT - 1}] (JAX's PRNG key "
                f"keeps 32 bits of it without float64, so a larger or negative seed would "
                f"repeat or differ between dtypes); got {_shown(v)}. Use a seed in that range."
            )
        return v

    @field_validator("name")
    @classmethod
    def _name_is_one_path_component(cls, v):
        """`name` becomes a folder name under ``runs/``: one path component, printable."""
        if v is None:
            return v
        bad = [c for c in v if c in "/\\" or not c.isprintable()]
        if not v.strip() or v in (".", "..") or bad or len(v) > MAX_NAME:
            raise ValueError(
                f"`name` must be one folder name of 1 to {MAX_NAME} printable characters "
                f"without '/' or '\\' (it names the run directory under runs/); got {v!r}. "
                "Use letters, digits, '-', '_' and '.'."
            )
        return v

    @model_validator(mode="after")
    def _cross_fields(self):
        """The rules between sections: a config that passes them builds (files aside)."""
        problems = list(_cross_field_problems(self))
        if problems:
            raise ValueError(" ".join(problems))
        return self


def _cross_field_problems(cfg: Config):
    """Each rule that ties two sections together, as a message naming the fields."""
    data, dyn, model, rec = cfg.data, cfg.dynamics, cfg.model, cfg.record
    if rec.snapshot_every is not None and rec.snapshot_every % rec.every:
        yield (
            f"`record.snapshot_every` must be a multiple of `record.every` ({rec.every}); "
            f"got {rec.snapshot_every}."
        )
    if rec.snapshot_count is not None and rec.snapshot_every is not None:
        yield (
            "`record.snapshot_count` and `record.snapshot_every` exclude each other (a number "
            "of snapshots spaced by `record.snapshot_spacing`, or one every K steps); got "
            f"snapshot_count = {rec.snapshot_count} and snapshot_every = {rec.snapshot_every}. "
            "Remove one of them."
        )
    if rec.snapshot_spacing == "log" and rec.snapshot_count is None:
        yield (
            "`record.snapshot_spacing: log` needs `record.snapshot_count` (how many snapshots, "
            "e.g. 60, log-spaced from the first record to the last step); set "
            "`record.snapshot_count`."
        )
    grid = dyn.steps // rec.every + 1 + (dyn.steps % rec.every > 0)
    if rec.snapshot_count is not None and rec.snapshot_count > grid:
        yield (
            f"`record.snapshot_count` must be at most {grid}, the number of record steps "
            f"(`record.every` = {rec.every} up to `dynamics.steps` = {dyn.steps}, t = 0 and the "
            f"last step included: a snapshot lies on a record step); got {rec.snapshot_count}."
        )
    if rec.chunk is not None and (rec.chunk % rec.every):
        yield f"`record.chunk` must be a multiple of `record.every` ({rec.every}); got {rec.chunk}."
    if data.population is not None and data.path is not None:
        yield (
            "`data.population` and `data.path` exclude each other: the population risk has no "
            "data set. Remove one of them."
        )
    if data.path is None and data.target is None and data.population is None:
        yield "`data` needs either `path` (an npz with x, y) or a `target` (sign, teacher)."
    needs_teacher = data.population is not None or (data.path is None and data.target == "teacher")
    if needs_teacher and data.teacher is None:
        yield (
            "`data.target: teacher` (as `data.population`) needs `data.teacher`: inline `w` "
            "(k lists of dim numbers) and `alpha`, or `path` to an npz with `w`, `alpha`."
        )
    t = data.teacher
    if needs_teacher and t is not None and t.path is None and model.kind == "two_layer":
        if t.w is None:
            yield "`data.teacher` needs `w` (a list of k input weight vectors) or `path`."
        else:
            dim = data.population.dim if data.population else data.inputs.dim
            where = "data.population.dim" if data.population else "data.inputs.dim"
            bad = [len(row) for row in t.w if len(row) != dim]
            if bad:
                yield (
                    f"`data.teacher.w` has dimension {bad[0]} but `{where}` is {dim}; they "
                    "must agree."
                )
    pop = data.population
    if pop is not None and pop.method == "closed_form" and model.kind != "two_layer":
        yield (
            f"`data.population.method: closed_form` is the kernel of two-layer units; for "
            f"`model.kind: {model.kind}` use `monte_carlo` or `quadrature` (dim <= 3)."
        )
    elif pop is not None and pop.method == "closed_form":
        activation = (t.activation if t is not None else None) or model.activation
        if activation not in ("relu", "erf"):
            yield (
                "`data.population.method: closed_form` exists only for relu and erf units "
                f"without bias; got activation {activation!r}. Use `quadrature` (dim <= 3) "
                "or `monte_carlo` instead."
            )
        if model.bias:
            yield (
                "`data.population.method: closed_form` supports students without bias; set "
                "`model.bias: false` or use `quadrature` (dim <= 3) or `monte_carlo`."
            )
        if activation != model.activation:
            yield (
                "`data.population.method: closed_form` needs the student and the teacher to "
                f"share the activation; got `model.activation` {model.activation!r} and "
                f"teacher {activation!r}."
            )
        if t is not None and t.b is not None and any(b != 0 for b in t.b):
            yield (
                "`data.population.method: closed_form` supports teachers without bias; "
                "`data.teacher.b` is non-zero. Use `quadrature` (dim <= 3) or `monte_carlo`."
            )
    if dyn.sampling == "online" and dyn.kind == "sgd" and data.path:
        yield (
            "`dynamics.sampling: online` draws fresh inputs from `data.inputs` and a named "
            "`data.target`, but `data.path` gives a fixed data set; use `sampling: epochs`."
        )
    if dyn.langevin is not None and dyn.kind != "pde" and dyn.integrator != "euler_maruyama":
        yield (
            f"`dynamics.langevin` adds noise, which `dynamics.integrator: {dyn.integrator}` "
            "cannot take; set `dynamics.integrator: euler_maruyama`."
        )
    if (dyn.langevin is not None or dyn.birth_death is not None) and model.scaling != "mean_field":
        what = "`dynamics.langevin`" if dyn.langevin is not None else "`dynamics.birth_death`"
        yield (
            f"{what} is defined for `model.scaling: mean_field` (it acts on the measure); got "
            f"{model.scaling!r}."
        )
    if rec.entropy_k and dyn.langevin is None:
        yield (
            "`record.entropy_k` records the entropy and the free energy F = E - H/beta of a "
            "noisy run; this config has no `dynamics.langevin`. Set `record.entropy_k: 0` or "
            "add the noise."
        )
    yield from _deep_problems(cfg)
    yield from _adaptive_problems(cfg)
    yield from _pde_problems(cfg)
    yield from _paired_problems(cfg)
    yield from _unrepresentable(cfg, cfg.dtype)
    if model.init.path is None and model.width is None:
        yield "`model.width` is needed when `model.init.path` is not given."
    if rec.overlaps and (model.kind != "two_layer" or not needs_teacher):
        what = (
            f"`model.kind: {model.kind}`"
            if model.kind != "two_layer"
            else ("a data file" if data.path else f"`data.target: {data.target}`")
        )
        yield (
            "`record.overlaps` records the first-layer overlaps of a two-layer student with a "
            "two-layer teacher (`data.target: teacher` or `data.population` with "
            f"`data.teacher`); this run has {what}."
        )
    if rec.w2 is not None and rec.w2.teacher and not needs_teacher:
        what = "a data file" if data.path else repr(data.target)
        yield (
            "`record.w2.teacher` needs a teacher (`data.target: teacher` or `data.population` "
            f"with `data.teacher`); this run's target is {what}."
        )


_TWO_LAYER_ONLY = ("bias", "train_output", "trainable", "gamma", "activation_scale", "alpha")
_TEACHER_TWO_LAYER = ("w", "a", "b", "activation_scale")
_TEACHER_DEEP = ("width", "depth", "std")


def _changed(section: BaseModel, key: str) -> bool:
    """Whether ``key`` of a config section differs from its default (a resolved config.yaml
    states every key, so "was it written" cannot tell a user's choice from a default)."""
    return getattr(section, key) != type(section).model_fields[key].get_default(
        call_default_factory=True
    )


_ADAPTIVE_ONLY = ("rtol", "atol", "solver", "max_steps")


def _adaptive_problems(cfg: Config):
    """`dynamics.integrator: adaptive` solves an ODE to a tolerance: its options only with
    it, a tolerance above round-off, and no noise, jumps, fresh batches or reflection."""
    dyn = cfg.dynamics
    if dyn.integrator != "adaptive":
        for key in _ADAPTIVE_ONLY:
            if _changed(dyn, key):
                yield (
                    f"`dynamics.{key}` is an option of `dynamics.integrator: adaptive`; the "
                    f"integrator is {dyn.integrator}: remove `dynamics.{key}` or set "
                    "`dynamics.integrator: adaptive`."
                )
        return
    eps = 2.0**-52 if cfg.dtype == "float64" else 2.0**-23
    if dyn.rtol < 10 * eps:
        yield (
            f"`dynamics.rtol` must be at least 10 x the round-off of `dtype` {cfg.dtype} "
            f"({10 * eps:.2g}): a smaller error per step cannot be measured; got {dyn.rtol:g}."
        )
    refused = (
        ("dynamics.birth_death", dyn.birth_death is not None, "jumps between particles"),
        ("dynamics.domain", dyn.domain is not None, "a reflection between steps"),
    )
    for what, on, why in refused:
        if on:
            yield (
                f"`{what}` adds {why}, which `dynamics.integrator: adaptive` (an ODE solver "
                f"to a tolerance) cannot take; remove `{what}` or use `dynamics.integrator: "
                "euler` or `heun`."
            )
    if dyn.kind == "sgd":
        yield (
            "`dynamics.integrator: adaptive` solves the ODE of the full-batch velocity; "
            f"`dynamics.kind: sgd` (`dynamics.batch_size` {dyn.batch_size}) draws a new "
            "batch each step, which has no ODE. Use `dynamics.kind: gradient_flow` or "
            "`dynamics.integrator: euler`."
        )
    pop = cfg.data.population
    if pop is not None and pop.method == "monte_carlo" and dyn.kind != "pde":
        yield (
            "`dynamics.integrator: adaptive` solves the ODE of the exact velocity; "
            "`data.population.method: monte_carlo` steps on fresh samples each step. Use "
            "`closed_form` or `quadrature`, or `dynamics.integrator: euler`."
        )


def _paired_problems(cfg: Config):
    """`model.init.paired`: mirrors (-a, w, b) need an output weight a and an even width."""
    ms = cfg.model
    if not ms.init.paired:
        return
    if ms.kind != "two_layer" or not ms.train_output:
        what = f"`model.kind: {ms.kind}`"
        if ms.kind == "two_layer":
            what = "`model.train_output: false`"
        yield (
            "`model.init.paired` mirrors each unit's output weight a -> -a; it needs a two-layer "
            f"network with output weights (`model.train_output: true`); got {what}."
        )
    if ms.init.path is not None:
        yield "`model.init.paired` draws the particles; remove it or `model.init.path`."
    if ms.width is not None and ms.width % 2:
        yield f"`model.init.paired` needs an even `model.width` (m/2 pairs); got {ms.width}."


def _pde_problems(cfg: Config):
    """The rules of `dynamics.kind: pde`: a two-layer mean-field model on a grid, full-batch
    risk, the grid's own time stepping, constant temperature."""
    dyn, model = cfg.dynamics, cfg.model
    if dyn.kind != "pde":
        if dyn.grid is not None:
            yield f"`dynamics.grid` is the grid of `dynamics.kind: pde`; got kind {dyn.kind}."
        return
    if model.kind != "two_layer" or model.scaling != "mean_field":
        yield (
            "`dynamics.kind: pde` solves the mean-field PDE of a two-layer network: it needs "
            f"`model.kind: two_layer` and `model.scaling: mean_field`; got {model.kind} and "
            f"{model.scaling}."
        )
    if _changed(dyn, "integrator"):
        yield (
            "`dynamics.integrator` steps particles; the grid's time stepping is "
            "`dynamics.grid.scheme` (explicit or imex): remove `dynamics.integrator`."
        )
    if dyn.batch_size is not None or _changed(dyn, "sampling"):
        yield "`dynamics.kind: pde` uses the full risk: remove `dynamics.batch_size`/`sampling`."
    ls = dyn.langevin
    if ls is not None and (ls.schedule != "constant" or ls.drift_scale != 1.0):
        yield (
            "`dynamics.kind: pde` takes a constant temperature (`dynamics.langevin.schedule: "
            f"constant`, `drift_scale: 1`); got schedule {ls.schedule!r}, drift_scale "
            f"{ls.drift_scale}."
        )
    if cfg.record.w2 is not None or cfg.record.flow_norm:
        yield "`record.w2` and `record.flow_norm` are particle metrics; remove them for a pde run."
    if cfg.record.entropy_k:
        yield "`record.entropy_k` is the particles' kNN entropy; a pde run records the exact one."
    g = dyn.grid or GridSpec()
    cells = [g.cells] if isinstance(g.cells, int) else g.cells
    for key, v in (("low", g.low), ("high", g.high)):
        if isinstance(v, list) and len(v) != len(cells):
            yield (
                f"`dynamics.grid.{key}` needs one value per axis ({len(cells)}, as "
                f"`dynamics.grid.cells`); got {len(v)}."
            )
    if dyn.domain is not None and (g.low is not None or g.high is not None):
        yield (
            "`dynamics.domain` is the grid's box: remove `dynamics.grid.low/high` (the grid "
            "covers the domain)."
        )
    if (
        dyn.domain is not None
        and dyn.domain.kind == "ball"
        and g.scheme == "imex"
        and len(cells) > 1
    ):
        yield "`dynamics.grid.scheme: imex` needs a box; a 2-D ball needs `scheme: explicit`."


def _deep_problems(cfg: Config):
    """The rules of `model.kind`: options of one kind refused on another, a depth where one
    is needed, the dynamics a deep model takes."""
    model, data, dyn = cfg.model, cfg.data, cfg.dynamics
    kind = model.kind
    if kind == "two_layer":
        for key in ("depth", "solver", "rtol", "atol"):
            if _changed(model, key):
                yield (
                    f"`model.{key}` is an option of the deep models (`model.kind` "
                    f"ensemble_resnet, wide_resnet or multilayer); `model.kind` is two_layer."
                )
        if model.init.hidden is not None:
            yield "`model.init.hidden` is for `model.kind: multilayer`; remove it."
        if data.teacher is not None:
            for key in _TEACHER_DEEP:
                if _changed(data.teacher, key):
                    yield (
                        f"`data.teacher.{key}` draws a deep teacher; a two-layer teacher is "
                        "given by `w`, `alpha` (and `a`, `b`) or `path`."
                    )
        if cfg.objective.expansion is not None:
            yield "`objective.expansion` needs `model.kind: wide_resnet`; got two_layer."
        if cfg.record.flow_norm:
            yield "`record.flow_norm` needs `model.kind: wide_resnet`; got two_layer."
        return
    for key in _TWO_LAYER_ONLY:
        if _changed(model, key):
            yield (
                f"`model.{key}` is an option of `model.kind: two_layer` (its a, w, b units); "
                f"`model.kind` is {kind}: remove `model.{key}`."
            )
    if _changed(model.init, "b"):
        yield f"`model.init.b` is the bias law of a two-layer unit; a {kind} has no bias."
    if kind != "multilayer" and (_changed(model.init, "a") or model.init.hidden):
        yield (
            f"`model.init.a` and `model.init.hidden` are laws of a multilayer network; every "
            f"entry of a {kind} is drawn from `model.init.w`."
        )
    if model.depth is None and kind != "multilayer":
        yield f"`model.kind: {kind}` needs `model.depth` (the number L of residual blocks)."
    if kind == "multilayer" and model.depth is not None and model.depth < 2:
        yield (
            f"`model.depth` of a multilayer network is its number H >= 2 of hidden layers "
            f"(one hidden layer is `model.kind: two_layer`); got {model.depth}."
        )
    if kind != "wide_resnet":
        for key in ("solver", "rtol", "atol"):
            if _changed(model, key):
                yield f"`model.{key}` is an option of `model.kind: wide_resnet`; got {kind}."
        if cfg.objective.expansion is not None:
            yield f"`objective.expansion` needs `model.kind: wide_resnet`; got {kind}."
        if cfg.record.flow_norm:
            yield f"`record.flow_norm` needs `model.kind: wide_resnet`; got {kind}."
    if kind in ("ensemble_resnet", "wide_resnet") and model.scaling != "mean_field":
        yield f"`model.scaling` must be mean_field for `model.kind: {kind}`; got {model.scaling!r}."
    if kind == "multilayer" and model.scaling == "general":
        yield (
            "`model.scaling` of a multilayer network must be mean_field or ntk (a general gamma "
            "has no single time scale across its layers)."
        )
    if kind == "multilayer":
        for what, on in (
            ("dynamics.langevin", dyn.langevin),
            ("dynamics.birth_death", dyn.birth_death),
            ("dynamics.domain", dyn.domain),
        ):
            if on is not None:
                yield (
                    f"`{what}` acts on a measure of particles; a multilayer network's rows pack "
                    "weights of several layers, so it is not defined for `model.kind: multilayer`."
                )
    t = data.teacher
    if t is not None:
        for key in _TEACHER_TWO_LAYER:
            if getattr(t, key) is not None:
                yield (
                    f"`data.teacher.{key}` is a two-layer teacher's option; a {kind} teacher is a "
                    "network of its kind: `path` (a particle file) or `width`, `std`, `depth` "
                    "(drawn at random)."
                )
        if t.alpha is not None and kind != "ensemble_resnet":
            yield (
                "`data.teacher.alpha` weighs the ResNets of an ensemble teacher; it is for "
                f"`model.kind: ensemble_resnet`, not {kind}."
            )
        if t.path is not None and t.width is not None:
            yield "`data.teacher.path` and `data.teacher.width` exclude each other; keep one."
    if cfg.record.w2 is not None and cfg.record.w2.teacher:
        yield (
            "`record.w2.teacher` needs the teacher as atoms of the student's particle space "
            f"(a two-layer teacher); not defined for `model.kind: {kind}`."
        )


# the largest finite number of each dtype (numpy.finfo(dtype).max)
_FLOAT_MAX = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38}


def _floats(section: BaseModel, prefix: str = ""):
    """(dotted path, value) of every float of a config section, in lists too."""
    for name, value in section:  # a pydantic model iterates over (field, value)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from _floats(value, path + ".")
        elif isinstance(value, float):
            yield path, value
        elif isinstance(value, list):
            flat = [x for v in value for x in (v if isinstance(v, list) else [v])]
            yield from ((path, x) for x in flat if isinstance(x, float))


def _unrepresentable(cfg: Config, dtype: str):
    """Every float of the config is a number of the run's dtype: a value beyond the
    largest float32 (3.4e38) becomes inf in a float32 run (``beta_max: .inf`` is "no cap")."""
    top = _FLOAT_MAX[dtype]
    for path, value in _floats(cfg):
        if math.isfinite(value) and abs(value) > top:
            yield (
                f"`{path}` is {value:g}, beyond the largest {dtype} ({top:.4g}), so the run "
                "would see inf; use a smaller value or `dtype: float64`."
            )
            return


# ----------------------------------------------------------------- errors


def _schema_keys(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = None
        for cand in typing.get_args(ann) or (ann,):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                sub = cand
        out[name] = sub
    return out


def _valid_keys_at(loc: tuple, schema: type[BaseModel]) -> list[str]:
    model: type[BaseModel] | None = schema
    for part in loc:
        if model is None or isinstance(part, int):
            return []
        model = _schema_keys(model).get(part)
    return list(_schema_keys(model)) if model is not None else []


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 6
_REPR.maxlevel = 3


def _shown(value) -> str:
    """A short repr of a value received: long strings, huge numbers and deep or shared
    (YAML alias) structures are cut (`reprlib`), so a message stays one short paragraph."""
    if isinstance(value, dict):
        return "a mapping"
    try:
        return _REPR.repr(value)
    except ValueError:  # an int past Python's 4300-digit str limit
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"


def _key(part) -> str:
    """A key of a field's dotted path as written in a message: itself when it is a short
    printable name, else its short repr (an empty key, control characters, a backtick)."""
    text = str(part)
    if text and text.isprintable() and len(text) <= 60 and "`" not in text:
        return text
    return _shown(text).replace("`", "\\x60")


def _upper_bound(loc: tuple, schema: type[BaseModel]):
    """The ``le`` bound of the field at ``loc`` (None if it has none or is not found)."""
    model: type[BaseModel] | None = schema
    field = None
    for part in loc:
        if model is None or isinstance(part, int):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _schema_keys(model).get(part)
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Le):
            return meta.le
    return None


def format_validation_error(
    err: pydantic.ValidationError, prefix: tuple[str, ...] = (), schema: type[BaseModel] = None
) -> str:
    """One paragraph per problem: field, rule, value received, fix.

    Args:
        err: the pydantic error.
        prefix: the dotted path of the validated section in the config (e.g.
            ``("experiment", "params")`` for an experiment's params).
        schema: the model that was validated (default: `Config`).
    """
    schema = Config if schema is None else schema
    parts = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in ("function-after",))
        path = ".".join(_key(p) for p in (*prefix, *loc))
        value = e.get("input")
        kind = e["type"]
        if kind == "extra_forbidden":
            parent, key = loc[:-1], str(loc[-1])
            valid = _valid_keys_at(parent, schema)
            guess = closest(key, valid) if len(key) <= 100 else None  # difflib is quadratic
            shown_parent = (*prefix, *parent)
            where = ".".join(map(str, shown_parent)) or "the top level"
            hint = f" Did you mean `{'.'.join(map(str, (*shown_parent, guess)))}`?" if guess else ""
            parts.append(f"Unknown key `{path}`.{hint} Valid keys at {where}: {', '.join(valid)}.")
            continue
        msg = e["msg"]
        if kind == "invalid_key":
            parent = ".".join(map(str, (*prefix, *loc[:-1])))
            where = f"`{parent}`" if parent else "the top level"
            parts.append(
                f"Key `{path}` at {where} must be a string (a name such as `model`); got "
                f"{_shown(loc[-1])}."
            )
            continue
        if kind == "missing":
            parts.append(f"`{path}` is required (it has no default); add it.")
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            if path and f"`{path}" not in msg:  # name the section the rule belongs to
                msg = f"`{path}`: {msg}"
            parts.append(msg if msg.endswith((".", "?")) else msg + ".")
            continue
        if msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        msg = re.sub(r"^(Input|List|String|Dictionary|Tuple|Value) should", "must", msg)
        upper = _upper_bound(loc, schema)
        if kind == "int_parsing_size" and upper is not None:
            msg = f"must be an integer <= {upper}"  # 1e21 is no integer a field can take
        if upper == MAX_COUNT and kind in ("int_parsing_size", "less_than_equal"):
            msg += " (2^31 - 1: JAX counts with 32-bit integers without float64)"
        parts.append(f"`{path}` {msg}; got {_shown(value)}.")
    return " ".join(parts) + " Fix the config (or the `--set` override) and run again."


# ------------------------------------------------------------ loading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of a YAML config file; a `ConfigError` (one paragraph) when the file is
    missing, unreadable, not UTF-8 text, not YAML, or holds something else than a mapping."""
    path = Path(path)
    try:
        exists = path.is_file()
    except OSError as exc:  # a name the system refuses (too long)
        raise ConfigError(f"config file {_shown(str(path))}: {exc.strerror}.") from None
    if not exists:
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(path)!r} cannot be read as UTF-8 text ({type(exc).__name__}: {exc})."
        ) from None
    try:
        data = parse_yaml(text) or {}
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # PyYAML's message spans lines: one paragraph
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping; got {type(data).__name__}."
        )
    return data


def merge(base: dict, over: dict) -> dict:
    """Deep merge of nested dicts (``over`` wins)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_path(raw: dict, key: str, value: Any) -> dict:
    """Set the dotted ``key`` (e.g. ``model.width``) of a raw config dict to ``value`` in
    place, creating the sections on the way; returns ``raw``.

    Example:
        >>> set_path({"model": {"width": 8}}, "model.init.w.std", 0.5)
        {'model': {'width': 8, 'init': {'w': {'std': 0.5}}}}
    """
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{key!r} is not a dotted key like `model.width`.")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"`--set` takes key=value (e.g. `--set model.width=1024`); got {item!r}."
            )
        key, _, text = item.partition("=")
        if not all(key.strip().split(".")):
            raise ConfigError(f"`--set`: {key!r} is not a dotted key like `model.width`.")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError:  # not YAML: the text itself (validation judges it)
            value = text
        set_path(out, key, value)
    return out


def validate(raw: dict) -> Config:
    """Validate a raw dict into a `Config` (every field, then the rules between sections);
    a `ConfigError` paragraph otherwise."""
    try:
        return Config.model_validate(raw)
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load(source: str | os.PathLike | dict, overrides: list[str] | None = None) -> Config:
    raw = read_yaml(source) if not isinstance(source, dict) else source
    return validate(apply_overrides(raw, overrides or []))


def dump(cfg: Config) -> str:
    """The resolved config as YAML (every default filled)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "Config",
    "apply_overrides",
    "dump",
    "load",
    "merge",
    "set_path",
    "validate",
]
