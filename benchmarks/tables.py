"""Render the benchmark tables of the READMEs from the stored JSON results.

A generated table sits between two marker comments in a markdown file::

    <!-- table: NAME -->
    Source: `results/bench_x_cpu2.json` (run 2026-12-03 17:55, load average 2.00 on 2 CPUs).

    | ... the table ... |

    <!-- /table -->

``TABLES[NAME]`` describes it declaratively: which JSON file(s) (`Source`), which rows,
which columns (`Col`: a path into the row, a number format, a unit, marks). Everything
between the markers is generated, caption line included; the prose around them is not
touched. One renderer serves every table:

    python benchmarks/tables.py            # rewrite benchmarks/README.md and README.md in place
    python benchmarks/tables.py --check    # exit 1 if a table is not what its JSON renders

A table whose JSON file is missing is left as it is (with a note). Files without markers
are left alone, so the top-level README's speed tables become generated as soon as they
get markers (specs ``step_cpu`` and ``step_h100``).

Paths into a row are ``/``-separated keys (``eps/0.01/samples``; list indices as
numbers); ``name:path`` reads the row of source ``name`` (tables joining several files or
lists), a leading ``/`` reads from the document's root, and ``{var}`` is filled from an
explicit row's variables (`Table.items`). Number formats (`format_value`): ``g`` two
significant digits below 10, three from 10 on (``6.7``, ``12.6``, ``2 510``); ``gN``
N significant digits; ``fN`` N decimals; ``eN`` scientific with N decimals (``2.4e-5``);
``int``; ``count`` (an integer, ``2.7e6`` from a million on); ``dur`` (seconds as
``0.026 s``, ``294 s``, ``17 min``, ``8.2 h``); ``bytes`` (``21.5 kB``, ``0.39 MB``,
decimal units); ``shape`` (``64 x 64``); ``text``; or a dict from values to labels.
Thousands are grouped with a space (``24 800``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
READMES = (HERE / "README.md", HERE.parent / "README.md")

# ----------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Source:
    """One JSON file and the rows a table takes from it.

    ``rows``: path to a list of row objects, or to one object (one row); ``""`` is the
    whole document. ``key``: paths whose values identify a row across sources (joins).
    ``where``: keep only rows whose values at these paths equal the given ones.
    """

    file: str
    rows: str = ""
    key: tuple[str, ...] = ()
    where: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Calc:
    """A value computed from several paths: ``sum`` of them, or ``ratio`` of two."""

    op: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Mark:
    """Rewrite a cell (``template``, ``{value}`` the formatted cell) where the row's value
    at ``path`` equals ``equals`` (or, with ``equals`` None, is true)."""

    path: str
    template: str
    equals: Any = None


@dataclass(frozen=True)
class Col:
    """One column.

    ``value``: a path (or a `Calc`, or a tuple of them: joined by ``sep``) formatted
    by ``fmt`` after multiplying by ``scale``, then ``unit`` appended; or ``text``: a
    template filled from the row (``"{n} x {m}"``). ``wrap`` (``{value}`` the cell) may
    name a row variable holding a template, e.g. ``"{time_wrap}"``. A missing value is an
    empty cell; a column empty in every row is an error (a wrong path).
    """

    header: str
    value: str | Calc | tuple[str | Calc, ...] | None = None
    fmt: str | Mapping[Any, str] | Callable[[Any], str] = "g"
    text: str | None = None
    scale: float = 1.0
    unit: str = ""
    sep: str = " / "
    wrap: str = "{value}"
    marks: tuple[Mark, ...] = ()


@dataclass(frozen=True)
class Table:
    """A generated table: sources (the first is the primary), columns, row order.

    Rows: one per row of the primary source, the others joined on ``key`` (``join =
    "left"``), or one per key found in any source (``"union"``, sorted by ``sort``), or,
    with ``items``, one per item over the sources' single rows (each item's fields fill
    ``{var}`` in paths, texts and wraps; ``defaults`` fills the ones an item omits).
    """

    sources: Mapping[str, Source]
    cols: tuple[Col, ...]
    items: tuple[Mapping[str, Any], ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    join: str = "left"
    sort: str | None = None


DTYPE = {"float64": "f64", "float32": "f32"}
APPROX = Mark("euler_extrapolated", "~{value}")  # extrapolated, not measured

TABLES: dict[str, Table] = {
    "population": Table(
        sources={
            "cpu": Source("bench_population_cpu2.json", "rows", key=("m", "dtype")),
            "h100": Source("bench_population_h100.json", "rows", key=("m", "dtype")),
        },
        cols=(
            Col("m", "m", "text"),
            Col("dtype", "dtype", DTYPE),
            Col("N for 1 %", "eps/0.01/samples"),
            Col(
                "MC / closed form, 1 % (CPU / H100)",
                ("cpu:eps/0.01/mc_over_closed_form", "h100:eps/0.01/mc_over_closed_form"),
            ),
            Col("N for 0.1 %", "eps/0.001/samples", scale=1e-6, unit=" M"),
            Col(
                "MC / closed form, 0.1 % (CPU / H100)",
                ("cpu:eps/0.001/mc_over_closed_form", "h100:eps/0.001/mc_over_closed_form"),
            ),
        ),
    ),
    "sweep": Table(
        sources={"run": Source("bench_sweep_cpu2.json")},
        items=(
            {"label": "serial (`--workers 1`)", "k": "serial"},
            {"label": "local processes (`--workers 2`)", "k": "processes"},
            {"label": "seed batch, vmap (`--workers 1 --batch-seeds`)", "k": "batch"},
            {"label": "two seed batches of 4 (`--workers 2 --batch-seeds`)", "k": "batch x2"},
        ),
        cols=(
            Col("8 seeds, m = 512, 400 steps", text="{label}"),
            Col("wall s", "seeds/wall_s/{k}"),
            Col("vs serial", "seeds/speedup_over_serial/{k}", "f2"),
        ),
    ),
    "deep": Table(
        sources={"run": Source("bench_deep_cpu2.json", "rows")},
        cols=(
            Col(
                "problem",
                "problem",
                {
                    "wide_resnet": "wide-ResNet L = {L}, N = {N}, d = {d}",
                    "ensemble_resnet": "ensemble-ResNet N = {N}, L = {L}, d = {d}",
                },
            ),
            Col("dtype", "dtype", "text"),
            Col("plain steps/s", "steps_per_s/plain", "g3"),
            Col("mfnn steps/s", "steps_per_s/mfnn", "g3"),
            Col("mfnn / plain", "mfnn_over_plain", "f2", unit="x"),
            Col("mfnn every=10 / plain", "mfnn_every10_over_plain", "f2", unit="x"),
        ),
    ),
    "adaptive": Table(
        sources={"run": Source("bench_adaptive_cpu2.json", "rows")},
        cols=(
            Col("target", "target", "e0"),
            Col("Euler dt", "euler_dt", "e2"),
            Col("Euler steps", "euler_steps", "count", marks=(APPROX,)),
            Col("Euler time", "euler_s", "dur", marks=(APPROX,)),
            Col("adaptive rtol", "adaptive/rtol", "e0"),
            Col("internal steps", Calc("sum", ("adaptive/accepted", "adaptive/rejected")), "int"),
            Col("evaluations", "adaptive/evaluations", "int"),
            Col("adaptive time", "adaptive/wall_s", "dur"),
            Col("adaptive error", "adaptive/error", "e1"),
            Col("evaluations ratio", Calc("ratio", ("euler_steps", "adaptive/evaluations"))),
            Col("time ratio", Calc("ratio", ("euler_s", "adaptive/wall_s"))),
        ),
    ),
    "online": Table(
        sources={"run": Source("bench_online_cpu2.json", "rows")},
        cols=(
            Col("dtype", "dtype", "text"),
            Col("plain steps/s", "plain_steps_per_s", "g3"),
            Col("mfnn, records at the ends only", "mfnn_steps_per_s", "g3"),
            Col("/ plain", "mfnn_over_plain", "f2", unit="x"),
            Col("mfnn, records every 1000 steps", "mfnn_records_steps_per_s", "g3"),
            Col("/ plain", "mfnn_records_over_plain", "f2", unit="x"),
            Col("plain us/step", "plain_us_per_step", "g3"),
            Col("mfnn us/step", "mfnn_us_per_step", "g3"),
            Col("overhead us/step", "overhead_us_per_step", "f1"),
            Col("one record", "us_per_record", "int", unit=" us"),
        ),
    ),
    "online_langevin": Table(
        sources={"run": Source("bench_online_cpu2.json", "langevin")},
        cols=(
            Col("m particles, n points", text="{m}, {n}"),
            Col("dtype", "dtype", "text"),
            Col("plain us/step", "plain_us_per_step", "g3"),
            Col("mfnn us/step", "mfnn_us_per_step", "g3"),
            Col("mfnn / plain", "mfnn_over_plain", "f2", unit="x"),
            Col("mfnn without noise, us/step", "mfnn_flow_us_per_step", "g3"),
            Col("mfnn's noise, us/step", "noise_us_per_step", "f1"),
        ),
    ),
    "startup": Table(
        sources={"run": Source("bench_startup_cpu2.json", "result")},
        items=(
            {
                "label": '`python -c "import jax"` (the baseline)',
                "p": "import_jax",
                "r": "",
                "target": "",
            },
            {"label": "`mfnn --help`", "p": "help", "r": "help", "target": ""},
            {
                "label": "`mfnn experiments`",
                "p": "experiments",
                "r": "experiments",
                "target": "<= 1.0x",
            },
            {
                "label": "`mfnn experiments sign`",
                "p": "experiments_sign",
                "r": "experiments_sign",
                "target": "",
            },
            {
                "label": "a repeated tiny run (`teacher_sgd`, m = 64, 100 steps)",
                "p": "tiny_run_repeated",
                "r": "tiny_run_repeated",
                "target": "<= 3.0x",
            },
            {
                "label": "the same, cache off (`MFNN_CACHE_DIR=off`)",
                "p": "tiny_run_no_cache",
                "r": "tiny_run_no_cache",
                "target": "",
            },
            {
                "label": "the first tiny run, empty cache",
                "p": "tiny_run_first",
                "r": "tiny_run_first",
                "target": "",
            },
        ),  # fmt: skip
        cols=(
            Col("command", text="{label}"),
            Col("median", "{p}_s", unit=" s"),
            Col("/ `import jax`", "{r}_ratio", "f2", unit="x"),
            Col("target", text="{target}"),
        ),
    ),
    "kernels": Table(
        sources={"run": Source("bench_kernels_cpu2.json", "result")},
        items=(
            {"label": "mfnn", "p": "mfnn"},
            {"label": "NumPy", "p": "numpy"},
            {"label": "jax op by op", "p": "jax_op_by_op"},
        ),
        cols=(
            Col("", text="{label}"),
            Col("Gram matrices", "{p}_gram_s", unit=" s"),
            Col("solve", "{p}_solve_s", unit=" s"),
            Col("total", "{p}_total_s", unit=" s"),
            Col("mfnn speed-up", "speedup_vs_{p}", "g3", unit="x"),
        ),
    ),
    "pde": Table(
        sources={
            "threads": Source("bench_pde_cpu2.json", "throughput", key=("cells", "flux", "dtype")),
            "one": Source(
                "bench_pde_cpu2_1thread.json", "throughput", key=("cells", "flux", "dtype")
            ),
        },
        cols=(
            Col("cells", "cells", "shape"),
            Col("flux", "flux", "text"),
            Col("dtype", "dtype", DTYPE),
            Col("mfnn", "threads:cell_steps_per_s/mfnn", scale=1e-6, unit=" M"),
            Col("numpy", "threads:cell_steps_per_s/numpy", scale=1e-6, unit=" M"),
            # bracketed: the 1-D 16384 ratios of the shared machine's stalled BLAS split
            # (see the prose under the table)
            Col(
                "mfnn / numpy",
                "threads:mfnn_over_numpy",
                unit="x",
                marks=(Mark("cells", "({value})", equals=[16384]),),
            ),
            Col("mfnn, 1 thread", "one:cell_steps_per_s/mfnn", scale=1e-6, unit=" M"),
            Col("numpy, 1 thread", "one:cell_steps_per_s/numpy", scale=1e-6, unit=" M"),
            Col("mfnn / numpy, 1 thread", "one:mfnn_over_numpy", unit="x"),
        ),
    ),
    "pde_scaling": Table(
        sources={
            "q": Source("bench_pde_cpu2.json", "scaling/sampled/rows", key=("C",)),
            "k": Source("bench_pde_cpu2.json", "scaling/kernel/rows", key=("C",)),
        },
        join="union",
        sort="C",
        cols=(
            Col("C", "C", "text"),
            Col("quadrature: step", "q:step", "int", scale=1e6),
            Col("first variation", "q:first_variation", "int", scale=1e6),
            Col("NumPy first variation", "q:numpy_first_variation", "int", scale=1e6),
            Col("kernel: step", "k:step", "int", scale=1e6),
            Col("first variation", "k:first_variation", "int", scale=1e6),
            Col("NumPy first variation", "k:numpy_first_variation", "int", scale=1e6),
        ),
    ),
    "report": Table(
        sources={
            "report": Source("bench_report_cpu2.json"),
            "animate": Source("bench_animate_cpu2.json"),
        },
        defaults={"time_wrap": "{value}", "size_wrap": "{value}"},
        items=(
            {
                "label": "`mfnn report RUN_DIR` (fresh process)",
                "time": "report:mfnn_report_cli_s",
                "time_wrap": "{value} (target: < 10 s)",
                "size": "report:report_html_bytes",
                "size_wrap": "report.html {value}",
            },
            {"label": "`write_report` in process", "time": "report:write_report_s"},
            {
                "label": "its page alone (checks, SVG metric charts, config, links)",
                "time": "report:page_without_animation_s",
            },
            {
                "label": "its animation (101 frames, breakpoint view, GIF)",
                "time": "report:animation_s",
                "size": "report:animation_bytes",
            },
            {
                "label": "`animate_run`, synthetic 100 x 10^4 (teacher drift)",
                "time": "animate:animate_run_s",
                "size": "animate:bytes",
                "size_wrap": "{value} GIF",
            },
        ),
        cols=(
            Col("what", text="{label}"),
            Col("time", "{time}", "dur", wrap="{time_wrap}"),
            Col("size", "{size}", "bytes", wrap="{size_wrap}"),
        ),
    ),
    "sharding": Table(
        sources={"run": Source("bench_sharding_cpu2.json", "rows")},
        cols=(
            Col("scaling", "mode", "text"),
            Col("devices", "devices", "text"),
            Col("m", "m", "text"),
            Col("steps/s", "steps_per_s_loop", "g3"),
            Col("speed-up", "speedup", "f2", unit="x"),
            Col("efficiency", "efficiency", "f2"),
            Col("first call", "first_call_s", "dur"),
        ),
    ),
    # the top-level README's speed tables (bench_step); the asterisk marks the largest CPU
    # size, where 2 records weigh on a 10-step call (see the prose there)
    "step_cpu": Table(
        sources={"run": Source("bench_step_cpu2.json", "rows")},
        cols=(
            Col("n x m x d", text="{n} x {m} x {d}"),
            Col("dtype", "dtype", DTYPE),
            Col("best plain st/s", "best_plain_steps_per_s", "g3"),
            Col("(m, d) jax loop", "jax/steps_per_s", "g3"),
            Col("mfnn simulate", "mfnn_big/steps_per_s", "g3"),
            Col(
                "simulate / best",
                "mfnn_big_over_best",
                "f2",
                marks=(Mark("n", "{value}*", equals=16384),),
            ),
            Col("step / best", "mfnn_step_over_best", "f2"),
            Col("simulate w/o its 2 records / best", "mfnn_loop_over_best", "f2"),
        ),
    ),
    "roofline": Table(
        sources={"run": Source("bench_step_cpu2.json", "rows")},
        cols=(
            Col("n x m x d", text="{n} x {m} x {d}"),
            Col("dtype", "dtype", DTYPE),
            Col("square GEMM GF/s", "square_gemm/gflops", "g3"),
            Col("mfnn step GF/s", "mfnn_step/gflops", "g3"),
            Col("fraction of square GEMM", "mfnn_step/frac_square", "f2"),
            Col("unblocked step, fraction", "mfnn_step_unblocked/frac_square", "f2"),
            Col("best peer", "best_peer", "text"),
            Col("step / best peer", "mfnn_step_over_best", "f2"),
            Col("simulate w/o records / best peer", "mfnn_loop_over_best", "f2"),
            Col("one record, in steps", "record_over_step", "f2"),
        ),
    ),
    "step_h100": Table(
        sources={"run": Source("bench_step_h100.json", "rows")},
        cols=(
            Col("n x m x d", text="{n} x {m} x {d}"),
            Col("dtype", "dtype", DTYPE),
            Col("best plain st/s", "best_plain_steps_per_s", "g3"),
            Col("mfnn simulate", "mfnn_big/steps_per_s", "g3"),
            Col("simulate / best", "mfnn_big_over_best", "f2"),
            Col("step / best", "mfnn_step_over_best", "f2"),
        ),
    ),
}

# ----------------------------------------------------------------------------- formats


def _group(digits: str) -> str:
    """Group the integer part of a plain decimal string by thousands with spaces."""
    sign = "-" if digits.startswith("-") else ""
    whole, dot, frac = digits.lstrip("-").partition(".")
    if len(whole) > 3:
        head = len(whole) % 3 or 3
        whole = " ".join([whole[:head]] + [whole[i : i + 3] for i in range(head, len(whole), 3)])
    return sign + whole + dot + frac


def _sig(x: float, n: int) -> str:
    """``x`` to ``n`` significant digits, positional, trailing zeros kept (0.050, 22.0)."""
    if x == 0:
        return "0"
    r = float(f"{x:.{n - 1}e}")  # rounded to n significant digits
    decimals = max(n - 1 - math.floor(math.log10(abs(r))), 0)
    return _group(f"{r:.{decimals}f}")


def _sci(x: float, n: int) -> str:
    """Scientific with ``n`` decimals and a bare exponent: 2.4e-5, 1e-4, 2.7e6."""
    mantissa, _, exponent = f"{x:.{n}e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def _terse(x: float) -> str:
    """Two significant digits below 10, three from 10 on (9.98 -> 10.0, not 10)."""
    return _sig(x, 2 if abs(float(f"{x:.1e}")) < 10 else 3)


def _duration(s: float) -> str:
    if s < 1000:
        return f"{_terse(s)} s"
    if s < 3 * 3600:
        return f"{_terse(s / 60)} min"
    if s < 72 * 3600:
        return f"{_terse(s / 3600)} h"
    return f"{_terse(s / 86400)} d"


def _bytes(b: float) -> str:
    return f"{_terse(b / 1e3)} kB" if b < 1e5 else f"{_terse(b / 1e6)} MB"


def format_value(x: Any, fmt: str | Mapping[Any, str] | Callable[[Any], str]) -> str:
    """One value as a cell (the formats are listed in the module docstring)."""
    if callable(fmt):
        return fmt(x)
    if isinstance(fmt, Mapping):
        return fmt.get(x, str(x))
    if fmt == "text":
        return str(x)
    if fmt == "shape":
        return " x ".join(str(v) for v in x) if isinstance(x, list | tuple) else str(x)
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"format {fmt!r} needs a number, got {x!r}")
    if not math.isfinite(x):
        return str(x)
    if fmt == "g":
        return _terse(x)
    if fmt == "int":
        return _group(str(round(x)))
    if fmt == "count":
        return _group(str(round(x))) if abs(x) < 1e6 else _sci(x, 1)
    if fmt == "dur":
        return _duration(x)
    if fmt == "bytes":
        return _bytes(x)
    m = re.fullmatch(r"([gfe])(\d)", fmt)
    if m is None:
        raise ValueError(f"unknown format {fmt!r}")
    kind, n = m.group(1), int(m.group(2))
    if kind == "g":
        return _sig(x, max(n, 1))
    if kind == "f":
        return _group(f"{x:.{n}f}")
    return _sci(x, n)


# ----------------------------------------------------------------------------- rows

_MISSING = object()
_VAR = re.compile(r"\{([A-Za-z_]\w*)\}")


def _fill(template: str, names: Mapping[str, Any]) -> str:
    """Replace ``{name}`` by ``names[name]`` (unknown names stay), until nothing changes
    (a variable may hold a template: ``time_wrap = "{value} (target)"``)."""
    for _ in range(4):
        out = _VAR.sub(lambda m: str(names.get(m.group(1), m.group(0))), template)
        if out == template:
            break
        template = out
    return template


def _walk(obj: Any, path: str) -> Any:
    for part in [p for p in path.split("/") if p]:
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return _MISSING
    return obj


@dataclass
class _Row:
    """One table row: the row object of each source (absent where a join found none),
    each source's document, and the variables of an explicit item."""

    rows: dict[str, Any]
    docs: dict[str, Any]
    names: dict[str, Any]

    def get(self, path: str) -> Any:
        path = _fill(path, self.names)
        name, sep, rest = path.partition(":")
        if sep and name in self.docs:
            if rest.startswith("/"):
                return _walk(self.docs[name], rest)
            return _walk(self.rows.get(name, _MISSING), rest) if name in self.rows else _MISSING
        if path.startswith("/"):
            return _walk(next(iter(self.docs.values())), path)
        for row in self.rows.values():  # the primary's row first
            value = _walk(row, path)
            if value is not _MISSING:
                return value
        return _MISSING

    def value(self, spec: str | Calc) -> Any:
        if isinstance(spec, str):
            return self.get(spec)
        values = [self.get(p) for p in spec.paths]
        if any(v is _MISSING for v in values):
            return _MISSING
        if spec.op == "sum":
            return sum(values)
        if spec.op == "ratio" and len(values) == 2:
            return values[0] / values[1] if values[1] else _MISSING
        raise ValueError(f"unknown calculation {spec.op!r} over {len(values)} paths")

    def fields(self) -> dict[str, Any]:
        """The variables a text template sees: the item's, then the rows' top-level
        fields."""
        out: dict[str, Any] = {}
        for row in reversed(list(self.rows.values())):
            if isinstance(row, Mapping):
                out.update(row)
        return out | self.names


def _rows_of(doc: Any, src: Source) -> list[Any]:
    found = _walk(doc, src.rows)
    if found is _MISSING:
        raise KeyError(f"{src.file}: no {src.rows!r}")
    rows = found if isinstance(found, list) else [found]
    return [r for r in rows if all(_walk(r, p) == v for p, v in src.where.items())]


def _key(row: Any, src: Source) -> str:
    return json.dumps([_walk(row, p) for p in src.key], sort_keys=True, default=str)


class MissingResult(Exception):
    """A table's JSON file does not exist."""


def _table_rows(table: Table, results: Path) -> tuple[list[_Row], dict[str, Any]]:
    docs, lists = {}, {}
    for name, src in table.sources.items():
        path = results / src.file
        if not path.is_file():
            raise MissingResult(str(path))
        docs[name] = json.loads(path.read_text())
        lists[name] = _rows_of(docs[name], src)
    names = list(table.sources)
    if table.items:
        for name in names:
            if len(lists[name]) != 1:
                raise ValueError(f"items need one row per source; {name} has {len(lists[name])}")
        single = {n: lists[n][0] for n in names}
        return [_Row(single, docs, dict(table.defaults) | dict(it)) for it in table.items], docs
    index = {}
    for name in names:
        src = table.sources[name]
        index[name] = {}
        for i, r in enumerate(lists[name]):
            k = _key(r, src) if src.key else str(i)  # no key: rows pair by position
            if k in index[name]:
                raise ValueError(f"{src.file}: two rows with key {k} (set Source.key)")
            index[name][k] = r
    if table.join == "left":
        keys = list(index[names[0]])
    elif table.join == "union":
        keys = list(dict.fromkeys(k for n in names for k in index[n]))
    else:
        raise ValueError(f"unknown join {table.join!r}")
    out = [
        _Row({n: index[n][k] for n in names if k in index[n]}, docs, dict(table.defaults))
        for k in keys
    ]
    if table.sort:
        out.sort(key=lambda r: r.get(table.sort))
    return out, docs


def _cell(row: _Row, col: Col) -> str:
    if col.text is not None:
        return _fill(col.text, row.fields())
    specs = col.value if isinstance(col.value, tuple) else (col.value,)
    parts = []
    for spec in specs:
        v = row.value(spec)
        if v is _MISSING or v is None:
            parts.append("")
            continue
        if col.scale != 1.0:
            v = v * col.scale
        fmt = col.fmt
        if isinstance(fmt, Mapping):
            parts.append(_fill(format_value(v, fmt), row.fields()))
        else:
            parts.append(format_value(v, fmt) + col.unit)
    if not any(parts):
        return ""
    cell = col.sep.join(parts)
    for mark in col.marks:
        got = row.get(mark.path)
        if got is not _MISSING and (bool(got) if mark.equals is None else got == mark.equals):
            cell = mark.template.replace("{value}", cell)
    wrap = _fill(col.wrap, row.names)
    return wrap.replace("{value}", cell)


def _md_row(cells: list[str]) -> str:
    return "|" + "|".join(f" {c.replace('|', chr(92) + '|')} " if c else " " for c in cells) + "|"


# ----------------------------------------------------------------------------- captions


def _first(doc: Any, keys: tuple[str, ...]) -> Any:
    """The first of ``keys`` found at the top of the document or one level down (under
    run_all's stamp ``_run_all`` first, then ``meta``, ``machine``, the rest)."""
    if not isinstance(doc, Mapping):
        return None
    places = [doc.get("_run_all"), doc, doc.get("meta"), doc.get("machine")]
    places += [v for v in doc.values() if isinstance(v, Mapping)]
    for place in places:
        if isinstance(place, Mapping):
            for k in keys:
                if place.get(k) not in (None, "", []):
                    return place[k]
    return None


def _date(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    for fmt in ("%a %b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        for candidate in (text, text[:19]):  # ISO times may carry fractions or a zone
            try:
                return time.strftime("%Y-%m-%d %H:%M", time.strptime(candidate, fmt))
            except ValueError:
                continue
    return text


def _load(value: Any) -> float | None:
    if isinstance(value, str):
        value = value.split()[0] if value.split() else None
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def caption(files: list[tuple[str, Any]]) -> str:
    """``Source: `file` (run DATE, load average L on N CPUs).`` per file; a value the JSON
    does not record is said to be not recorded."""
    parts = []
    for label, doc in files:
        date = _date(_first(doc, ("date", "time", "started", "timestamp")))
        load = _load(
            _first(
                doc,
                ("load_start", "load", "load_average", "load_average_start",
                 "load_average_at_start", "loadavg_start", "loadavg"),
            )
        )  # fmt: skip
        cpus = _first(doc, ("cpu_count", "cores", "cpus"))
        when = f"run {date}" if date else "date not recorded"
        if load is None:
            how = "load not recorded"
        else:
            how = f"load average {load:.2f}" + (f" on {cpus} CPUs" if cpus else "")
        parts.append(f"`{label}` ({when}, {how})")
    return "Source: " + "; ".join(parts) + "."


def render_table(name: str, table: Table, results: Path, base: Path) -> str:
    """The text between a table's markers: caption, blank line, table, blank line.
    ``base``: the folder of the file the table goes into (the caption's paths are
    relative to it)."""
    rows, docs = _table_rows(table, results)
    body = [[_cell(r, c) for c in table.cols] for r in rows]
    for j, col in enumerate(table.cols):
        if rows and not any(line[j] for line in body):
            raise ValueError(f"table {name!r}: column {col.header!r} is empty in every row")
    seen, files = set(), []
    for n, src in table.sources.items():
        if src.file not in seen:
            seen.add(src.file)
            files.append((Path(os.path.relpath(results / src.file, base)).as_posix(), docs[n]))
    lines = [caption(files), "", _md_row([c.header for c in table.cols])]
    lines.append("|" + "|".join("---" for _ in table.cols) + "|")
    lines += [_md_row(cells) for cells in body]
    return "\n".join(lines) + "\n\n"


# ----------------------------------------------------------------------------- files

_BLOCK = re.compile(
    r"(?P<open>^<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(?P<close>^<!-- /table -->$)",
    re.S | re.M,
)


def render_text(
    text: str, results: Path, base: Path, tables: Mapping[str, Table] | None = None
) -> tuple[str, list[str]]:
    """Every marked table of ``text`` rendered from ``results``; returns the new text and
    notes (a missing JSON leaves its table as it is). An unknown table name, or a marker
    without its closing one, raises ValueError."""
    tables = TABLES if tables is None else tables
    notes: list[str] = []
    opens = len(re.findall(r"^<!-- table: ", text, re.M))
    closes = len(re.findall(r"^<!-- /table -->$", text, re.M))
    if opens != closes or opens != len(_BLOCK.findall(text)):
        raise ValueError(f"unbalanced table markers: {opens} opening, {closes} closing")

    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in tables:
            raise ValueError(f"no table spec named {name!r} (known: {', '.join(tables)})")
        try:
            body = render_table(name, tables[name], results, base)
        except MissingResult as e:
            notes.append(f"table {name}: {e} is missing; left as it is")
            body = m.group("body")
        return m.group("open") + body + m.group("close")

    return _BLOCK.sub(one, text), notes


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:  # mkstemp's file is private; a new file gets the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None, tables: Mapping[str, Table] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a table differs from what its JSON renders",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON folder")
    parser.add_argument(
        "--readme",
        type=Path,
        action="append",
        help="a markdown file with table markers (repeatable; default: benchmarks/README.md "
        "and README.md)",
    )
    parser.add_argument(
        "--out", type=Path, help="write the rendered file here instead (one --readme)"
    )
    args = parser.parse_args(argv)
    readmes = args.readme or [p for p in READMES if p.exists()]
    if args.out and len(readmes) != 1:
        parser.error("--out needs exactly one --readme")
    stale = []
    for readme in readmes:
        text = readme.read_text(encoding="utf-8")
        try:
            base = (args.out or readme).resolve().parent  # captions' paths are relative to it
            new, notes = render_text(text, args.results, base, tables)
        except (ValueError, KeyError, TypeError) as e:
            print(f"{readme}: {e}", file=sys.stderr)
            return 2
        for note in notes:
            print(f"{readme}: {note}")
        if args.check:
            if new != text:
                names = [
                    a.group("name")
                    for a, b in zip(_BLOCK.finditer(text), _BLOCK.finditer(new), strict=True)
                    if a.group("body") != b.group("body")
                ]
                stale.append(readme)
                print(f"{readme}: stale tables: {', '.join(names)} (run benchmarks/tables.py)")
            continue
        target = args.out or readme
        if args.out or new != text:
            write_atomic(target, new)
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
