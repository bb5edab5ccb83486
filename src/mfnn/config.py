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
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError, closest
from .models.activations import ACTIVATIONS, get_activation


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: ``1e-7`` is a number (YAML 1.1 wants ``1.0e-7``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    """Parse YAML text (safe; YAML 1.2 floats such as ``1e-7``)."""
    return yaml.load(text, Loader=_Loader)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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

    path: str | None = None
    a: LawSpec = LawSpec(law="gaussian", std=1.0)
    w: LawSpec = LawSpec(law="gaussian", std=1.0)
    b: LawSpec = LawSpec(law="uniform", low=-1.0, high=1.0)


class ModelSpec(_Strict):
    width: int | None = Field(512, gt=0)
    activation: str = "relu"
    scaling: Literal["mean_field", "ntk", "general"] = "mean_field"
    gamma: float | None = Field(None, ge=0.5, le=1.0)
    bias: bool = True
    train_output: bool = True
    trainable: list[Literal["a", "w", "b"]] | None = None
    init: InitSpec = InitSpec()

    @field_validator("activation")
    @classmethod
    def _activation(cls, v):
        get_activation(v)
        return v

    @model_validator(mode="after")
    def _gamma(self):
        if self.scaling == "general" and self.gamma is None:
            raise ValueError("`model.scaling: general` needs `model.gamma` in [0.5, 1]")
        return self


class InputsSpec(_Strict):
    """Input law: uniform on [low, high]^dim, or gaussian N(0, std^2 I_dim)."""

    law: Literal["uniform", "gaussian"] = "uniform"
    dim: int = Field(1, gt=0)
    low: float = -1.0
    high: float = 1.0
    std: float = Field(1.0, gt=0)


class TeacherSpec(_Strict):
    """Teacher rho* = sum_i alpha_i delta_{c_i}: inline arrays or an npz file."""

    path: str | None = None
    w: list[list[float]] | None = None
    alpha: list[float] | None = None
    a: list[float] | None = None
    b: list[float] | None = None
    activation: str | None = None


class PopulationSpec(_Strict):
    """The population risk: no data set, E_x over the input law (docs/theory.md section 3).

    method: closed_form (relu/erf units without bias, gaussian inputs), quadrature
    (any activation, dim <= 3; ``nodes`` per dimension) or monte_carlo (``samples``
    fresh inputs per step, the recorded risk on ``eval_samples`` fixed inputs).
    """

    inputs: Literal["gaussian", "uniform"] = "gaussian"
    dim: int = Field(2, gt=0)
    method: Literal["closed_form", "quadrature", "monte_carlo"] = "closed_form"
    nodes: int = Field(24, gt=0, le=150)  # the error estimate uses 2 nodes <= 300
    samples: int = Field(1024, gt=0)
    eval_samples: int = Field(16384, gt=0)
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
    path: str | None = None
    population: PopulationSpec | None = None
    test_path: str | None = None
    target: Literal["sign", "teacher", "zero"] | None = "sign"
    teacher: TeacherSpec | None = None
    inputs: InputsSpec = InputsSpec()
    n_train: int = Field(256, gt=0)
    n_test: int = Field(256, ge=0)
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
    l2: float = Field(0.0, ge=0)


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
    beta_max: float = float("inf")
    values: list[float] = []
    times: list[float] = []
    drift_scale: float = Field(1.0, gt=0)


class BirthDeathSpec(_Strict):
    """Birth-death jumps after each transport step, rate alpha (docs/theory.md section 10)."""

    rate: float = Field(1.0, ge=0)


class DynamicsSpec(_Strict):
    kind: Literal["gradient_flow", "sgd"] = "gradient_flow"
    integrator: Literal["euler", "heun", "euler_maruyama"] = "euler"
    langevin: LangevinSpec | None = None
    birth_death: BirthDeathSpec | None = None
    dt: float = Field(0.05, gt=0)
    steps: int = Field(2000, gt=0)
    batch_size: int | None = Field(None, gt=0)
    sampling: Literal["epochs", "online"] = "epochs"
    domain: DomainSpec | None = None

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
    reference: str | None = None  # a run directory with snapshots (record.snapshot_every)
    method: Literal["exact", "sliced"] = "exact"
    projections: int = Field(128, gt=0)  # directions of the sliced estimate


class RecordSpec(_Strict):
    every: int = Field(10, gt=0)
    # k of the kNN entropy of a Langevin run (None: 1 when `dynamics.langevin` is set; 0: off)
    entropy_k: int | None = Field(None, ge=0)
    snapshot_every: int | None = Field(None, gt=0)
    chunk: int | None = Field(None, gt=0)
    w2: W2RecordSpec | None = None


class ExperimentSpec(_Strict):
    """Which named experiment runs (``mfnn experiments`` lists them) and its parameters.

    ``params`` is validated by the experiment's own typed model (`mfnn.study.Params`);
    errors name `experiment.params.<key>`. ``mfnn experiments NAME`` lists the keys, their
    types and defaults.
    """

    name: str | None = None
    params: dict[str, Any] = {}


MAX_NAME = 100  # leaves room for the '-quick-YYYYmmdd-HHMMSS' suffix in 255 bytes


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
    mfnn_version: str | None = None

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
    if needs_teacher and t is not None and t.path is None:
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
    if pop is not None and pop.method == "closed_form":
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
    if dyn.langevin is not None and dyn.integrator != "euler_maruyama":
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
    if model.init.path is None and model.width is None:
        yield "`model.width` is needed when `model.init.path` is not given."
    if rec.w2 is not None and rec.w2.teacher and not needs_teacher:
        what = "a data file" if data.path else repr(data.target)
        yield (
            "`record.w2.teacher` needs a teacher (`data.target: teacher` or `data.population` "
            f"with `data.teacher`); this run's target is {what}."
        )


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
        path = ".".join(str(p) for p in (*prefix, *loc))
        value = e.get("input")
        kind = e["type"]
        if kind == "extra_forbidden":
            parent, key = loc[:-1], str(loc[-1])
            valid = _valid_keys_at(parent, schema)
            guess = closest(key, valid)
            shown_parent = (*prefix, *parent)
            where = ".".join(map(str, shown_parent)) or "the top level"
            hint = f" Did you mean `{'.'.join(map(str, (*shown_parent, guess)))}`?" if guess else ""
            parts.append(f"Unknown key `{path}`.{hint} Valid keys at {where}: {', '.join(valid)}.")
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            if path and f"`{path}" not in msg:  # name the section the rule belongs to
                msg = f"`{path}`: {msg}"
            parts.append(msg if msg.endswith((".", "?")) else msg + ".")
            continue
        if msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        shown = value if not isinstance(value, dict) else "a mapping"
        msg = msg.replace("Input should be", "must be").replace("Input should", "must")
        parts.append(f"`{path}` {msg}; got {shown!r}.")
    return " ".join(parts) + " Fix the config (or the `--set` override) and run again."


# ------------------------------------------------------------ loading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
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
        except yaml.YAMLError:
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
    "ACTIVATIONS",
    "Config",
    "apply_overrides",
    "dump",
    "load",
    "merge",
    "set_path",
    "validate",
]
