"""From a validated `Config` to the objects `simulate` takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .budget import check_memory
from .config import Config, InitSpec, LawSpec, read_yaml
from .domains import Ball, Box
from .dynamics import AbstractDynamics, BirthDeath, GradientFlow, Langevin, Temperature
from .errors import ConfigError
from .guard import DEFAULT as DEFAULT_GUARD
from .guard import Guard
from .integrators import INTEGRATORS, AbstractIntegrator, Adaptive, BirthDeathSplitting
from .measure import Constant, Gaussian, Uniform, load_particles, read_npz, sample_particles
from .models import AbstractModel, EnsembleResNet, Multilayer, TwoLayer, WideResNet
from .objectives import (
    AbstractObjective,
    EmpiricalRisk,
    Exact,
    ExpandedRisk,
    FullBatch,
    Minibatch,
    Online,
    PopulationRisk,
    ZeroRisk,
)
from .recorder import OverlapMonitor, Recorder, W2Monitor
from .rundir import list_snapshots
from .sharding import check_particle_run, check_width, device_count
from .targets import (
    DataSet,
    GaussianInputs,
    ModelTeacher,
    Sign,
    Teacher,
    UniformBox,
    load_dataset,
    sample_dataset,
    teacher_measure,
)
from .trajectory import snapshot_steps


@dataclasses.dataclass
class Built:
    """Everything a run needs, built from one config.

    ``config`` is the resolved config (the width read from a particle file filled in); the
    config given to `build` is not changed.
    """

    config: Config
    model: AbstractModel
    train: DataSet | None
    test: DataSet | None
    objective: AbstractObjective
    dynamics: AbstractDynamics
    integrator: AbstractIntegrator
    recorder: Recorder
    theta0: jax.Array
    key: jax.Array
    dt: float
    steps: int
    snapshot_every: int | None
    chunk: int | None
    guard: Guard = DEFAULT_GUARD
    # the steps of `record.snapshot_count` (`mfnn.trajectory.snapshot_steps`), or None
    snapshot_steps: tuple[int, ...] | None = None
    # the devices the particles are split over (`devices`, resolved: "all" -> the count)
    devices: int = 1


def enable_dtype(dtype: str):
    """float64 needs JAX's x64 mode; turning it on is the one global switch mfnn flips."""
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return jnp.dtype(dtype)


def init_law(spec: LawSpec) -> Gaussian | Uniform | Constant:
    """The law of one block's initial coordinates (`LawSpec`: gaussian, uniform, constant)."""
    if spec.law == "gaussian":
        return Gaussian(spec.mean, spec.std)
    if spec.law == "uniform":
        return Uniform(spec.low, spec.high)
    return Constant(spec.value)


def init_laws(init: InitSpec) -> dict[str, Gaussian | Uniform | Constant]:
    """The initial law of each block (a, w, b, and the multilayer's ``hidden`` weights when
    given) of ``model.init`` (`sample_particles`' input)."""
    laws = {"a": init_law(init.a), "w": init_law(init.w), "b": init_law(init.b)}
    if init.hidden is not None:
        laws["hidden"] = init_law(init.hidden)
    return laws


def make_model(cfg: Config, d: int, base: Path | None = None, width: int | None = None):
    """The student network of ``model`` (its `kind`) on inputs of dimension ``d``. A
    multilayer network's rows depend on its width N: ``width``, else ``model.width``, else
    the rows of the particle file ``model.init.path``."""
    ms = cfg.model
    if ms.kind == "two_layer":
        return TwoLayer(
            d=d,
            activation=ms.activation,
            scaling=ms.scaling,
            gamma=ms.gamma,
            bias=ms.bias,
            train_output=ms.train_output,
            trainable=None if ms.trainable is None else tuple(ms.trainable),
            activation_scale=ms.activation_scale,
            alpha=ms.alpha,
        )
    if ms.kind == "ensemble_resnet":
        return EnsembleResNet(d, ms.depth, ms.activation, ms.scaling)
    if ms.kind == "wide_resnet":
        return WideResNet(d, ms.depth, ms.activation, ms.scaling, ms.solver, ms.rtol, ms.atol)
    if width is None and ms.init.path is not None:
        path = _resolve(ms.init.path, base, "model.init.path")
        width = _multilayer_width(path, "model.init.path", "particle file")
    width = width if width is not None else ms.width
    if width is None:  # a file without w1: `from_arrays` names what is missing
        width = 1
    return Multilayer(d, width, ms.depth or 2, ms.activation, ms.scaling)


def _multilayer_width(path: Path, field: str, what: str) -> int | None:
    """N of a multilayer particle file: the rows of its ``w1`` (None without a (N, d) ``w1``;
    `Multilayer.from_arrays` then names what is missing)."""
    w1 = read_npz(path, field, what).get("w1")
    return int(np.shape(w1)[0]) if w1 is not None and np.ndim(w1) == 2 else None


def _deep_teacher(cfg: Config, base: Path | None, d: int, key) -> ModelTeacher:
    """The teacher of a deep student: a network of the student's kind on R^d, from the
    particle file ``data.teacher.path`` or drawn at random (``width`` particles, default 1:
    a vanilla ResNet for an ensemble; entries N(0, std^2)), of depth ``data.teacher.depth``
    (default the student's) and activation ``data.teacher.activation`` (default the
    student's); ``alpha`` weighs an ensemble teacher's ResNets. A wide-ResNet teacher is
    the network (``solver: euler``) whatever the student's ``model.solver``."""
    spec = cfg.data.teacher
    ms = cfg.model
    # a wide-ResNet teacher is the network itself (Euler), whatever the student's solver:
    # runs that differ only in `model.solver` learn the same function
    changes = {"activation": spec.activation or ms.activation, "solver": "euler"}
    if spec.depth is not None:
        changes["depth"] = spec.depth
    tcfg = cfg.model_copy(update={"model": ms.model_copy(update=changes)})
    if spec.path is not None:
        path = _resolve(spec.path, base, "data.teacher.path")
        width = 1
        if ms.kind == "multilayer":  # the rows of a multilayer teacher depend on its width
            width = _multilayer_width(path, "data.teacher.path", "teacher file") or 1
        model = make_model(tcfg, d, base, width)
        theta = load_particles(path, model, jnp.float64, "data.teacher.path")
    else:
        k = spec.width or 1
        model = make_model(tcfg, d, base, k)
        std = 1.0 if spec.std is None else spec.std
        laws = {"w": Gaussian(0.0, std), "a": Gaussian(0.0, std)}
        theta = model.sample(key, k, laws, jnp.float64)
    alpha = None if spec.alpha is None else jnp.asarray(spec.alpha, jnp.float64)
    return ModelTeacher(model, theta, alpha)


def _target_teacher(cfg: Config, base: Path | None, d: int, key):
    """The teacher of ``data.teacher``: a two-layer `Teacher` or a deep `ModelTeacher`."""
    if cfg.model.kind == "two_layer":
        return _teacher(cfg, base, cfg.model.activation, d)
    return _deep_teacher(cfg, base, d, key)


def _resolve(path: str, base: Path | None, field: str = "path") -> Path:
    """``path`` with ``~`` expanded, relative to ``base`` unless it exists from the cwd."""
    try:
        p = Path(path).expanduser()
        return p if p.is_absolute() or base is None or p.exists() else base / p
    except (RuntimeError, OSError) as exc:  # ~nosuchuser, a name the system refuses
        raise ConfigError(f"`{field}`: cannot use the path {path!r} ({exc}).") from None


def _teacher(cfg: Config, base: Path | None, default_activation: str, dim: int) -> Teacher:
    """The teacher of ``data.teacher``: inline lists, or a file (`mfnn.measure.read_npz`
    rules) with ``w`` (k, d), k >= 1, and optional ``alpha``, ``a``, ``b`` (k,)."""
    spec = cfg.data.teacher  # present: the config's rules require it here
    if spec.path is not None:
        path = _resolve(spec.path, base, "data.teacher.path")
        arrays = read_npz(path, "data.teacher.path", "teacher file")
        if "w" not in arrays:
            raise ConfigError(
                f"`data.teacher.path`: teacher file {str(path)!r} has no `w` (k, d); it has "
                f"{sorted(arrays)}."
            )
        w, alpha = arrays["w"], arrays.get("alpha")
        a, b = arrays.get("a"), arrays.get("b")
        if np.ndim(w) not in (1, 2) or np.shape(w)[0] == 0:
            raise ConfigError(
                f"`data.teacher.path`: `w` of {str(path)!r} must be (k, d) with k >= 1; got "
                f"shape {np.shape(w)}."
            )
    else:
        w, alpha, a, b = spec.w, spec.alpha, spec.a, spec.b
    w = np.atleast_2d(np.asarray(w, np.float64))
    if w.shape[1] != dim:
        where = "data.population.dim" if cfg.data.population else "data.inputs.dim"
        raise ConfigError(
            f"`data.teacher.w` has dimension {w.shape[1]} but `{where}` is {dim}; they must agree."
        )
    scale = cfg.model.activation_scale if spec.activation_scale is None else spec.activation_scale
    return Teacher(w, alpha, a, b, spec.activation or default_activation, scale)


@jax.jit
def _all_finite(arrays) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


@jax.jit
def _run_keys(seed) -> tuple[jax.Array, ...]:
    """fold_in(key(seed), i) for i = 0..4: init, train, test, dynamics, teacher."""
    root = jax.random.key(seed)
    return tuple(jax.random.fold_in(root, i) for i in range(5))


_DATA_FIELDS = "`data.inputs` (low, high, std), `data.noise` and `data.teacher`"


def _check_finite(arrays, what: str, fields: str) -> None:
    """Refuse arrays a config made non-finite (a law whose samples overflow the dtype)."""
    if not bool(_all_finite(tuple(arrays))):
        raise ConfigError(
            f"{what} hold NaN or inf: the values of {fields} overflow the run's dtype; use "
            "smaller values (or `dtype: float64`)."
        )


def _load_data(path: str, base: Path | None, dtype, field: str) -> DataSet:
    """A data file: `mfnn.measure.read_npz` rules (an npz of finite numbers), then
    `mfnn.targets.load_dataset`'s (``x`` (n, d), ``y`` (n,)) and finite in ``dtype``."""
    resolved = _resolve(path, base, field)
    data = load_dataset(resolved, dtype, field)  # through `read_npz`
    if data.x.shape[0] == 0:
        raise ConfigError(f"`{field}`: data file {str(resolved)!r} holds no points (n = 0).")
    _check_finite((data.x, data.y), f"`{field}`: the data of {str(resolved)!r}", f"`{field}`")
    return data


# the exact W2 of a record builds the (m, n) cost on the host: refuse sizes it cannot afford
_EXACT_W2_MAX_ENTRIES = 25_000_000


def _reference_clouds(path: Path, model: TwoLayer, dtype) -> tuple[jax.Array, jax.Array]:
    """(times (S,), particles (S, M, D)) of the snapshots of the run directory ``path``."""
    field = "record.w2.reference"
    if not (path / "config.yaml").is_file():
        raise ConfigError(
            f"`{field}` must be a run directory (with config.yaml and snapshots/); "
            f"{str(path)!r} is not one."
        )
    snaps = list_snapshots(path)
    if not snaps:
        raise ConfigError(
            f"`{field}`: the run {str(path)!r} has no snapshots; run it with "
            "`record.snapshot_every` or `record.snapshot_count` set to the record times you "
            "want to compare at."
        )
    try:
        dt = float(read_yaml(path / "config.yaml")["dynamics"]["dt"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"`{field}`: {str(path / 'config.yaml')!r} does not state `dynamics.dt`."
        ) from None
    clouds = [load_particles(p, model, dtype, field) for p in snaps.values()]
    sizes = {c.shape[0] for c in clouds}
    if len(sizes) != 1:
        raise ConfigError(
            f"`{field}`: the snapshots of {str(path)!r} hold different numbers of particles "
            f"{sorted(sizes)}; a reference run has a fixed width."
        )
    return jnp.asarray([step * dt for step in snaps], dtype), jnp.stack(clouds)


def _w2_monitor(cfg: Config, base, model: TwoLayer, target, m: int, dtype) -> W2Monitor | None:
    """The `W2Monitor` of ``record.w2`` (None when unset or empty)."""
    spec = cfg.record.w2
    if spec is None or not (spec.initial or spec.teacher or spec.reference):
        return None
    teacher = None
    if spec.teacher:  # the config's rules make the target a teacher here
        atoms, alpha = teacher_measure(target, model)
        teacher = (atoms.astype(dtype), alpha.astype(dtype))
    reference = None
    if spec.reference is not None:
        reference = _reference_clouds(
            _resolve(spec.reference, base, "record.w2.reference"), model, dtype
        )
    if spec.method == "exact":
        sizes = [m] * spec.initial
        sizes += [] if teacher is None else [teacher[0].shape[0]]
        sizes += [] if reference is None else [reference[1].shape[1]]
        if m * max(sizes) > _EXACT_W2_MAX_ENTRIES:
            raise ConfigError(
                f"`record.w2.method: exact` builds an {m} x {max(sizes)} cost matrix at every "
                f"record (more than {_EXACT_W2_MAX_ENTRIES:.1e} entries, O(m^3) time); use "
                "`record.w2.method: sliced` (a lower bound) or post-process snapshots with "
                "`mfnn.diagnostics.transport.w2_sinkhorn`."
            )
    return W2Monitor(spec.initial, teacher, reference, spec.method, spec.projections)


def _flow_norm(cfg: Config) -> float | None:
    """p of the recorded flow norm: ``record.flow_norm`` (0: off), 2 for a wide-ResNet."""
    p = cfg.record.flow_norm
    if p is None:
        return 2.0 if cfg.model.kind == "wide_resnet" else None
    return float(p) or None


def _check_output(model, theta0, data: DataSet | None, target, d: int) -> None:
    """The student's output and the targets have one shape per sample: a ResNet's X^L is in
    R^d, a two-layer or multilayer network's output a number."""
    x = jax.ShapeDtypeStruct((1, d), theta0.dtype)  # shapes only: nothing runs
    out = jax.eval_shape(model.predict, theta0, x).shape[1:]
    if data is not None:
        want = tuple(data.y.shape[1:])
    elif target is not None:
        want = jax.eval_shape(target, x).shape[1:]
    else:
        return
    if tuple(out) != tuple(want):
        what = f"a vector in R^{out[0]}" if out else "a number"
        got = f"vectors in R^{want[0]}" if want else "numbers"
        raise ConfigError(
            f"the {type(model).__name__}'s output is {what} per input but the targets are "
            f"{got} (`data.target` / `data.path` / `data.teacher`): a ResNet learns maps "
            "R^d -> R^d (use `data.target: teacher`, or a data file with y of shape (n, d)); "
            "two-layer and multilayer networks learn numbers."
        )


def build(cfg: Config, base: str | Path | None = None) -> Built:
    """Build model, data, dynamics, integrator, recorder and initial particles.

    Keys: root = key(seed); initial particles from fold_in(root, 0), training inputs
    from fold_in(root, 1), test inputs from fold_in(root, 2), the dynamics (batches,
    noise) from fold_in(root, 3). Runs that differ only in scaling share particles and data.

    Args:
        cfg: a validated config.
        base: folder relative file paths are resolved against (besides the cwd).
    """
    base = Path(base) if base is not None else None
    check_memory(cfg, base)  # before any array: refuse what the machine cannot hold
    dtype = enable_dtype(cfg.dtype)
    check_particle_run(cfg.dynamics.kind, cfg.devices)
    devices = device_count(cfg.devices)  # more than the machine has: refused now
    k_init, k_train, k_test, k_dyn, k_teach = _run_keys(cfg.seed)

    # data
    target = None
    pop = cfg.data.population
    if pop is not None:
        law = (
            GaussianInputs(pop.dim)
            if pop.inputs == "gaussian"
            else UniformBox(pop.dim, pop.low, pop.high)
        )
        target = _target_teacher(cfg, base, pop.dim, k_teach)
        train, d = None, pop.dim
    elif cfg.data.path is not None:
        train = _load_data(cfg.data.path, base, dtype, "data.path")
        d = train.d
    else:
        inp = cfg.data.inputs
        law = (
            UniformBox(inp.dim, inp.low, inp.high)
            if inp.law == "uniform"
            else GaussianInputs(inp.dim, inp.std)
        )
        if cfg.data.target == "zero":  # R == 0: no data (the Ornstein-Uhlenbeck reference)
            target, train = None, None
        else:
            target = (
                Sign()
                if cfg.data.target == "sign"
                else _target_teacher(cfg, base, inp.dim, k_teach)
            )
            train = sample_dataset(target, law, cfg.data.n_train, k_train, dtype, cfg.data.noise)
        d = inp.dim
    if cfg.data.test_path is not None:
        test = _load_data(cfg.data.test_path, base, dtype, "data.test_path")
        if test.d != d:
            raise ConfigError(
                f"`data.test_path` has inputs of dimension {test.d}, the training data {d}."
            )
    elif target is not None and pop is None and cfg.data.n_test > 0:
        test = sample_dataset(target, law, cfg.data.n_test, k_test, dtype, cfg.data.noise)
    else:
        test = None
    for name, ds in (("train", train), ("test", test)):
        if ds is not None and pop is None and cfg.data.path is None:
            _check_finite((ds.x, ds.y), f"the sampled {name} data", _DATA_FIELDS)

    # model and particles
    ms = cfg.model
    model = make_model(cfg, d, base)
    if ms.init.path is not None:
        theta0 = load_particles(_resolve(ms.init.path, base, "model.init.path"), model, dtype)
        width = model.width_of(theta0) if isinstance(model, WideResNet) else theta0.shape[0]
        if ms.width is not None and "width" in ms.model_fields_set and ms.width != width:
            raise ConfigError(
                f"`model.width` is {ms.width} but the particle file `model.init.path` "
                f"({ms.init.path}) holds {width} particles per layer; remove `model.width` "
                "(it is inferred from the file) or make them agree."
            )
        # the resolved config states the real width (the input config is left as it is)
        resolved = cfg.model.model_copy(update={"width": int(width)})
        cfg = cfg.model_copy(update={"model": resolved})
    else:
        if ms.init.paired:  # m/2 draws and their mirrors (-a, w, b): f_0 = 0 exactly
            half = sample_particles(model, ms.width // 2, init_laws(ms.init), k_init, dtype)
            a_col = model.block_slices()["a"]
            theta0 = jnp.concatenate([half, half.at[:, a_col].multiply(-1.0)])
        else:
            theta0 = sample_particles(model, ms.width, init_laws(ms.init), k_init, dtype)
        _check_finite((theta0,), "the initial particles", "`model.init` (mean, std, low, high)")

    _check_output(model, theta0, train if train is not None else test, target, d)
    check_width(int(theta0.shape[0]), devices)

    # dynamics
    dyn = cfg.dynamics
    if pop is not None:
        objective = PopulationRisk.make(
            target,
            law,
            pop.method,
            model=model,
            nodes=pop.nodes,
            eval_samples=pop.eval_samples,
            key=k_test,
            dtype=dtype,
            l2=cfg.objective.l2,
        )
        if dyn.kind != "pde" and (pop.method == "monte_carlo" or dyn.kind == "sgd"):
            sampler = Online(law, target, dyn.batch_size or pop.samples, cfg.dtype)
        else:
            sampler = Exact()
    elif train is None:
        objective, sampler = ZeroRisk(cfg.objective.l2), Exact()
    else:
        objective = EmpiricalRisk(train, cfg.objective.l2)
        if dyn.kind in ("gradient_flow", "pde"):
            sampler = FullBatch(train)
        elif dyn.sampling == "epochs":
            sampler = Minibatch(train, dyn.batch_size)
        else:
            sampler = Online(law, target, dyn.batch_size, cfg.dtype)
    if cfg.objective.expansion is not None:
        objective = ExpandedRisk(objective, cfg.objective.expansion)
        objective.expanded(model)  # a wide-ResNet with sigma(0) = 0, or a ConfigError now
    domain = None
    if dyn.domain is not None:
        ds = dyn.domain
        domain = Ball(ds.radius) if ds.kind == "ball" else Box(ds.low, ds.high)
    dynamics = GradientFlow(model, objective, sampler, domain)
    if dyn.integrator == "adaptive":
        integrator = Adaptive(dyn.rtol, dyn.atol, dyn.solver, dyn.max_steps)
    else:
        integrator = INTEGRATORS[dyn.integrator]()
    if dyn.langevin is not None:
        ls = dyn.langevin
        temperature = Temperature(
            ls.beta,
            ls.schedule,
            rate=ls.rate,
            growth=ls.growth,
            period=ls.period,
            beta_max=ls.beta_max,
            values=tuple(ls.values),
            times=tuple(ls.times),
        )
        dynamics = Langevin(dynamics, temperature, ls.drift_scale)
    if dyn.birth_death is not None:
        dynamics = BirthDeath(dynamics, dyn.birth_death.rate)
        integrator = BirthDeathSplitting(integrator)
    rec = cfg.record
    # record.entropy_k: unset means 1 for a Langevin run and off otherwise; 0 means off
    entropy_k = rec.entropy_k if rec.entropy_k is not None else int(dyn.langevin is not None)
    m = int(theta0.shape[0])
    if entropy_k and dyn.langevin is not None and entropy_k >= m:
        raise ConfigError(
            f"`record.entropy_k` must be in [1, m - 1] = [1, {m - 1}] (the kNN entropy of m = "
            f"{m} particles needs k other particles; 0 turns it off); got {entropy_k}."
        )
    return Built(
        config=cfg,
        model=model,
        train=train,
        test=test,
        objective=objective,
        dynamics=dynamics,
        integrator=integrator,
        recorder=Recorder(
            rec.every,
            test,
            entropy_k=entropy_k or None,
            jumps=dyn.birth_death is not None,
            w2=_w2_monitor(cfg, base, model, target, m, dtype),
            flow_norm=_flow_norm(cfg),
            overlaps=(
                OverlapMonitor(jnp.asarray(target.w, dtype), m)
                if rec.overlaps and isinstance(target, Teacher)
                else None
            ),
        ),
        theta0=theta0,
        key=k_dyn,
        dt=float(dyn.dt),
        steps=int(dyn.steps),
        snapshot_every=rec.snapshot_every,
        chunk=rec.chunk,
        guard=Guard(**cfg.guard.model_dump()),
        devices=devices,
        snapshot_steps=(
            None
            if rec.snapshot_count is None
            else snapshot_steps(int(dyn.steps), rec.every, rec.snapshot_count, rec.snapshot_spacing)
        ),
    )
