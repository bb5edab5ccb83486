"""Fuzzing the config schema through the real `mfnn run` command (issue 12, items 5 and 6).

Random valid configs, and valid configs with one value replaced by something at or
beyond a bound, NaN/inf/huge/negative numbers, unicode or long strings, wrong types,
unknown keys, or broken input files, are written as YAML into a temporary folder and run
in-process. The rule for every case:

- exit 0 (completed), or exit 1 only for an honest divergence (the run says "diverged");
- or exit 2 with a one-paragraph ``error:`` message that names a field in backticks;
- never an uncaught exception (``result.exception`` is None or a `SystemExit`), never a
  "run failed" (an exception the CLI caught during the run), and no file written outside
  the run's folder (the working directory is an empty sandbox that must stay empty).

Valid runs are tiny (width <= 16, steps <= 20, n_train <= 16). The default tier runs a
small, derandomized budget over one run shape (so that its programs compile once); the
slow tier (``-m slow``) a larger random budget over every branch of the schema.
``MFNN_MEMORY_LIMIT_BYTES`` caps the memory estimate at 1 GiB, so that a value at a size
bound is refused by `mfnn.budget` before it allocates.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from mfnn import config
from mfnn.cli import app
from mfnn.models.activations import ACTIVATIONS
from npz_files import BROKEN_KINDS, write_npz

MEMORY_LIMIT = str(2**30)
FILE_FIELDS = ("model.init.path", "data.path", "data.test_path", "data.teacher.path")


# ------------------------------------------------------------------ the schema's leaves


def _section(annotation) -> type[BaseModel] | None:
    for cand in typing.get_args(annotation) or (annotation,):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _leaves(model: type[BaseModel] = config.Config, prefix: tuple[str, ...] = ()):
    """(dotted path, FieldInfo) of every field of the schema, sections included."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        yield ".".join(path), field
        sub = _section(field.annotation)
        if sub is not None:
            yield from _leaves(sub, path)


LEAVES = dict(_leaves())


def _is(annotation, kind) -> bool:
    return kind in (typing.get_args(annotation) or (annotation,))


def _bound_values(field) -> list:
    """Values at and just beyond each bound of a field (ints: +-1, floats: next float)."""
    is_int = _is(field.annotation, int)
    step_up = (lambda v: v + 1) if is_int else (lambda v: math.nextafter(v, math.inf))
    step_down = (lambda v: v - 1) if is_int else (lambda v: math.nextafter(v, -math.inf))
    out = []
    for meta in field.metadata:
        for attr, inside, outside in (
            ("gt", step_up, lambda v: v),
            ("ge", lambda v: v, step_down),
            ("le", lambda v: v, step_up),
            ("lt", step_down, lambda v: v),
        ):
            bound = getattr(meta, attr, None)
            if bound is not None:
                out += [inside(bound), outside(bound)]
    return out


JUNK = [
    math.nan,
    math.inf,
    -math.inf,
    1e21,
    -1e21,
    1e308,
    -1.0,
    0,
    -0.0,
    5e-324,
    2**31,
    2**32,
    2**63,
    2**64,
    10**30,
    -(2**63),
    True,
    None,
    "",
    "h\u00e9llo \u2713 \u202e\u0000",
    "x" * 3000,
    "1e21",
    ".nan",
    "../../../outside",
    "~nosuchuser_mfnn/x.npz",
    [],
    [1, [2, "a"]],
    {},
    {"k": 1},
]


def bad_value(path: str):
    """A strategy of values for the field at ``path``: its bounds, or junk of any type."""
    field = LEAVES[path]
    literals = [a for a in typing.get_args(field.annotation) if typing.get_origin(a)]
    # integers: small, non-positive or past the count bound; a valid mid-size count (steps
    # 10^6) would only make a slow run
    ints = st.one_of(st.integers(max_value=0), st.integers(1, 64), st.integers(min_value=2**31))
    options = [st.sampled_from(JUNK), st.text(max_size=40), st.floats(), ints]
    bounds = _bound_values(field)
    if bounds:
        options.append(st.sampled_from(bounds))
    if literals or typing.get_origin(field.annotation) is typing.Literal:
        options.append(st.sampled_from(["", "Euler", "float16", "\u00e9"]))
    return st.one_of(*options)


# ------------------------------------------------------------------- input files


def _write_file(path: Path, role: str, kind: str, d: int) -> None:
    """An input file of ``role`` (particles, data, teacher) that is ``kind``: good, or
    broken in one way (the file loaders must refuse each with a `ConfigError`)."""
    good = {
        "particles": {"a": np.ones(5), "w": np.ones((5, d)) * 0.3, "b": np.zeros(5)},
        "data": {"x": np.linspace(-1, 1, 6 * d).reshape(6, d), "y": np.linspace(0, 1, 6)},
        "teacher": {"w": np.eye(2, d), "alpha": np.array([0.5, 0.5])},
    }[role]
    write_npz(path, good, kind)


FILE_KINDS = ["good", *BROKEN_KINDS]


# ------------------------------------------------------------------- valid configs

FLOAT = st.floats(-2, 2, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def law(draw):
    kind = draw(st.sampled_from(["gaussian", "uniform", "constant"]))
    if kind == "gaussian":
        return {"law": kind, "mean": draw(FLOAT), "std": draw(st.floats(0, 2).map(abs))}
    if kind == "uniform":
        low = draw(FLOAT)
        return {"law": kind, "low": low, "high": low + draw(st.floats(0.01, 2))}
    return {"law": kind, "value": draw(FLOAT)}


def tiny() -> dict:
    """The run shape of the default tier: one compiled program for every draw of it."""
    return {
        "model": {"width": 4},
        "data": {"n_train": 8, "n_test": 4},
        "dynamics": {"steps": 4, "dt": 0.05},
        "record": {"every": 2},
    }


@st.composite
def tiny_configs(draw) -> dict:
    """Valid configs of the default tier's one shape; only numbers vary."""
    raw = tiny()
    raw["seed"] = draw(st.integers(0, 2**32 - 1))
    raw["dynamics"]["dt"] = draw(st.floats(1e-3, 0.5))
    raw["model"]["init"] = {"w": draw(law())}
    raw["data"]["noise"] = draw(st.floats(0, 1))
    raw["objective"] = {"l2": draw(st.floats(0, 1))}
    return raw


@st.composite
def any_configs(draw) -> dict:
    """Valid configs over the schema's branches (tiny: width <= 16, steps <= 20)."""
    raw = tiny()
    raw["seed"] = draw(st.integers(0, 2**32 - 1))
    raw["dtype"] = draw(st.sampled_from(["float64", "float32"]))
    model = raw["model"]
    model["width"] = draw(st.integers(1, 16))
    model["activation"] = draw(st.sampled_from(list(ACTIVATIONS)))
    model["scaling"] = draw(st.sampled_from(["mean_field", "ntk", "general"]))
    if model["scaling"] == "general":
        model["gamma"] = draw(st.floats(0.5, 1.0))
    model["bias"] = draw(st.booleans())
    model["train_output"] = draw(st.booleans())
    model["init"] = {blk: draw(law()) for blk in draw(st.sets(st.sampled_from("awb")))}
    data = raw["data"]
    dim = draw(st.integers(1, 3))
    data["n_train"] = draw(st.integers(1, 16))
    data["n_test"] = draw(st.integers(0, 16))
    data["inputs"] = {"law": draw(st.sampled_from(["uniform", "gaussian"])), "dim": dim}
    k = draw(st.integers(1, 3))
    alpha = [1.0 / k] * k
    teacher = {"w": [[draw(FLOAT) for _ in range(dim)] for _ in range(k)], "alpha": alpha}
    kind = draw(st.sampled_from(["sign", "teacher", "zero", "population"]))
    if kind == "teacher" or kind == "zero":
        data["target"] = kind
        data["teacher"] = teacher if kind == "teacher" else None
    elif kind == "population":
        method = draw(st.sampled_from(["closed_form", "quadrature", "monte_carlo"]))
        data["population"] = {"dim": dim, "method": method}
        data["teacher"] = teacher
        if method == "closed_form":
            model["bias"] = False
            model["activation"] = draw(st.sampled_from(["relu", "erf"]))
        elif method == "quadrature":
            data["population"]["nodes"] = draw(st.integers(1, 6))
        else:
            data["population"]["samples"] = draw(st.integers(1, 16))
            data["population"]["eval_samples"] = draw(st.integers(1, 32))
    dyn = raw["dynamics"]
    dyn["steps"] = draw(st.integers(1, 20))
    dyn["dt"] = draw(st.floats(1e-3, 0.5))
    dyn["integrator"] = draw(st.sampled_from(["euler", "heun"]))
    if draw(st.booleans()):
        dyn["kind"] = "sgd"
        dyn["batch_size"] = draw(st.integers(1, data["n_train"]))
        dyn["sampling"] = draw(st.sampled_from(["epochs", "online"]))
    if model["scaling"] == "mean_field" and draw(st.booleans()):
        dyn["integrator"] = "euler_maruyama"
        dyn["langevin"] = {"beta": draw(st.floats(0.1, 100))}
        if draw(st.booleans()):
            raw["record"]["entropy_k"] = draw(st.integers(0, 3))
    if model["scaling"] == "mean_field" and draw(st.booleans()):
        dyn["birth_death"] = {"rate": draw(st.floats(0, 5))}
    if draw(st.booleans()):
        dyn["domain"] = draw(
            st.sampled_from([{"kind": "ball", "radius": 2.0}, {"kind": "box", "low": -2.0}])
        )
    rec = raw["record"]
    rec["every"] = every = draw(st.integers(1, 5))
    if draw(st.booleans()):
        rec["snapshot_every"] = every * draw(st.integers(1, 4))
    if draw(st.booleans()):
        rec["chunk"] = every * draw(st.integers(1, 4))
    if draw(st.booleans()):
        rec["w2"] = {
            "initial": draw(st.booleans()),
            "teacher": kind in ("teacher", "population") and draw(st.booleans()),
            "method": draw(st.sampled_from(["exact", "sliced"])),
            "projections": draw(st.integers(1, 8)),
        }
    return raw


# ----------------------------------------------------------------------- mutations


def _set(raw: dict, path: str, value) -> None:
    node = raw
    *parents, last = path.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


@st.composite
def cases(draw, valid) -> tuple[dict | str, dict[str, str]]:
    """(config, {file name: kind}): a valid config, or one with one thing broken."""
    raw = draw(valid)
    files: dict[str, str] = {}
    what = draw(st.sampled_from(["valid", "value", "value", "value", "unknown", "file", "text"]))
    if what == "value":
        path = draw(st.sampled_from(sorted(LEAVES)))
        _set(raw, path, draw(bad_value(path)))
    elif what == "unknown":
        section = draw(st.sampled_from(["", "model.", "data.", "dynamics.", "record."]))
        _set(raw, section + draw(st.text(min_size=1, max_size=20)), 1)
    elif what == "file":
        field = draw(st.sampled_from(FILE_FIELDS))
        kind = draw(st.sampled_from(FILE_KINDS))
        name = f"{field.replace('.', '_')}.npz"
        files[name] = kind
        _set(raw, field, name)
        if field == "data.teacher.path":
            _set(raw, "data.target", "teacher")
            _set(raw, "data.teacher", {"path": name})
    elif what == "text":  # not a config mapping at all
        return draw(
            st.sampled_from(["- 1\n- 2\n", "a: [\n", "\t:", "seed: 1" + "0" * 5000, "42"])
        ), files
    return raw, files


# --------------------------------------------------------------------------- the check


@contextlib.contextmanager
def sandbox():
    """A temporary folder, the cwd an empty folder inside it, the memory limit set."""
    old_cwd, old_env = os.getcwd(), os.environ.get("MFNN_MEMORY_LIMIT_BYTES")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        os.chdir(root / "cwd")
        os.environ["MFNN_MEMORY_LIMIT_BYTES"] = MEMORY_LIMIT
        try:
            yield root
        finally:
            os.chdir(old_cwd)
            if old_env is None:
                os.environ.pop("MFNN_MEMORY_LIMIT_BYTES", None)
            else:
                os.environ["MFNN_MEMORY_LIMIT_BYTES"] = old_env


def _dims(raw) -> int:
    try:
        data = raw.get("data") or {}
        pop = data.get("population")
        dim = (pop or {}).get("dim") if isinstance(pop, dict) else None
        dim = dim or (data.get("inputs") or {}).get("dim", 1)
        return dim if isinstance(dim, int) and 1 <= dim <= 4 else 1
    except AttributeError:
        return 1


def run_case(raw, files: dict[str, str]) -> None:
    with sandbox() as root:
        d = _dims(raw) if isinstance(raw, dict) else 1
        for name, kind in files.items():
            role = "particles" if name.startswith("model") else "data"
            role = "teacher" if "teacher" in name else role
            _write_file(root / name, role, kind, d)
        cfg = root / "config.yaml"
        text = raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True)
        cfg.write_text(text, encoding="utf-8")
        before = {p for p in root.rglob("*")}
        out = root / "out"
        result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "--no-progress"])
        shown = f"config:\n{text[:2000]}\nfiles: {files}\noutput:\n{result.output[-3000:]}"
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            import traceback

            tb = "".join(traceback.format_exception(exc))
            pytest.fail(f"uncaught {type(exc).__name__}: {exc}\n{tb}\n{shown}")
        code = result.exit_code
        event(f"exit {code}")  # --hypothesis-show-statistics: how many cases ran
        assert code in (0, 1, 2), shown
        for crash in ("run failed", "internal error", "out of memory", "Traceback"):
            assert crash not in result.output, shown  # an exception the CLI caught
        if code == 1:
            assert "diverged" in result.output, shown
        if code == 2:
            errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, shown  # one paragraph
            assert re.search(r"`[^`]+`|config file", errors[0]), shown
        assert not any((root / "cwd").iterdir()), shown
        new = {p for p in root.rglob("*")} - before
        assert all(p == out or out in p.parents for p in new), (sorted(map(str, new)), shown)


COMMON = dict(
    deadline=None,
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(max_examples=15, derandomize=True, **COMMON)
@given(cases(tiny_configs()))
def test_cli_never_shows_a_traceback(case):
    run_case(*case)


@pytest.mark.slow
@settings(max_examples=300, **COMMON)
@given(cases(any_configs()))
def test_cli_never_shows_a_traceback_any_branch(case):
    run_case(*case)


# ------------------------------------------------- the issue's inputs, by name

ISSUE_CASES = [
    ("dynamics: {steps: 1e21}", "`dynamics.steps`"),  # a MemoryError before
    ("model: {width: 1e12}", "`model.width`"),  # an XLA abort (exit 134) before
    ("model: {width: 2000000000}", "`model.width`"),  # refused by the memory estimate
    ("seed: 9223372036854775808", "`seed`"),  # an OverflowError traceback before
    ("seed: -1", "`seed`"),
    ("model: {init: {a: {mean: .nan}}}", "`model.init.a.mean`"),
    ("model: {init: {w: {std: .inf}}}", "`model.init.w.std`"),
    ("objective: {l2: .inf}", "`objective.l2`"),
    ("data: {noise: .inf}", "`data.noise`"),
    ("dynamics: {dt: .inf}", "`dynamics.dt`"),
    ("dynamics: {integrator: euler_maruyama, langevin: {beta: .inf}}", "`dynamics.langevin.beta`"),
    ("dtype: float32\ndynamics: {dt: 1.0e+300}", "`dynamics.dt`"),
    ("dynamics: {steps: 2147483647}\nrecord: {every: 1}", "`dynamics.steps`"),
    ("model: {init: {path: particles.npz}}", "`model.init.path`"),
]


@pytest.mark.parametrize(("text", "field"), ISSUE_CASES)
def test_the_issue_inputs_exit_2_naming_the_field(text, field):
    with sandbox() as root:
        os.environ.pop("MFNN_MEMORY_LIMIT_BYTES")  # the machine's own limit
        (root / "particles.npz").write_bytes(pickle.dumps(np.ones(3)))
        cfg = root / "c.yaml"
        cfg.write_text(text)
        result = CliRunner().invoke(
            app, ["run", str(cfg), "--out", str(root / "out"), "--no-progress"]
        )
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        (error,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert field in error, result.output
        assert "allow_pickle" not in error


# Found by the fuzz test: `_resolve_target` read `experiment.name` before validation.
@pytest.mark.parametrize("name", ["850", "-6.2e16", "[1, 2]", "{a: 1}"])
def test_a_non_string_experiment_name_is_a_config_error(name):
    with sandbox() as root:
        cfg = root / "c.yaml"
        cfg.write_text(f"experiment: {{name: {name}}}\n")
        result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(root / "o")])
        assert result.exit_code == 2 and "`experiment.name`" in result.output, result.output
