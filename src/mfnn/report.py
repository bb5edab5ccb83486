r"""Browsable reports: one self-contained ``report.html`` per run, sweep and experiment, and
a gallery page over many experiments.

    mfnn report PATH          PATH a run, a sweep or an experiment directory
    mfnn gallery DIR          DIR/index.html: one card per experiment directory under DIR

A report puts together what a directory holds: the claim (an experiment's), the status
and verdict, the checks as a table (statistic, rule with its threshold, pass / fail /
informational), the metrics curves, the figures, the animation of the particle measure
(`mfnn.animate`), the sub-runs (an experiment's ``runs/``, a sweep's ``points/``, each
with its own report, linked both ways), the resolved config, and the versions and timing.

What a report writes, beside the files it reads::

    DIR/report.html               the page
    DIR/report/particles.gif|mp4  the animation of the snapshots (a run with >= 2)

Self-contained: every image and video is a relative link to a file in the directory, the
styles and the one script (sorting the tables) are inline; no network access is needed to
view it, and the folder can be moved or copied whole. Safe: every string taken from a
config, a summary or a file name is HTML-escaped (a config value ``<script>`` shows as
text), and the page's Content-Security-Policy allows only its own script (by its
SHA-256) and files, never an inline script or a remote resource that got in.

Metric curves are inline SVG charts drawn here (no image file, no plotting library: well
under a millisecond a chart), each on a log y axis when the quantity stays positive and
spans at least a decade (a decaying risk, a dissipation, a residual; the rule of
`mfnn.style.log_scale`), linear when it changes sign or barely moves.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import hashlib
import html
import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from .errors import ConfigError

__all__ = ["REPORT", "directory_kind", "write_gallery", "write_report"]

REPORT = "report.html"
GALLERY = "index.html"
ASSETS = "report"  # the folder of a report's own images

RUN, EXPERIMENT, SWEEP, CALL = "run", "experiment", "sweep", "call"
# an experiment's report animates its first sub-runs (plan order) only: ~0.3 s each for a
# small run, and some experiments have a hundred; `mfnn report RUN_DIR` animates any other
MAX_ANIMATED = 12

# ------------------------------------------------------------------------ reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def directory_kind(path: str | os.PathLike) -> str:
    """What a directory holds: ``"sweep"`` (sweep.json), ``"experiment"`` (a summary.json
    naming an experiment, or a config whose ``experiment.name`` is set), ``"run"`` (a
    config.yaml with metrics.csv or summary.json) or ``"call"`` (an experiment's
    result.json of a library computation).

    Raises:
        ConfigError: ``path`` is not a directory, or none of these.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"`PATH` {str(path)!r} is not a directory; give a run directory.")
    if (path / "sweep.json").is_file():
        return SWEEP
    summary = _read_json(path / "summary.json")
    if "experiment" in summary:
        return EXPERIMENT
    if (path / "config.yaml").is_file():
        cfg = _read_yaml(path / "config.yaml")
        if isinstance(cfg.get("experiment"), dict) and cfg["experiment"].get("name"):
            return EXPERIMENT
        if (path / "metrics.csv").is_file() or summary:
            return RUN
    if (path / "result.json").is_file():
        return CALL
    raise ConfigError(
        f"`PATH` {str(path)!r} is neither a run, a sweep nor an experiment directory (no "
        "config.yaml with metrics.csv, sweep.json or summary.json in it)."
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------- formatting


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too: safe inside attributes).

    Example:
        >>> esc("<script>alert(1)</script>")
        '&lt;script&gt;alert(1)&lt;/script&gt;'
    """
    return html.escape(str(value), quote=True)


def _href(path: str) -> str:
    """A relative link, percent-encoded (names like ``seed=0__dt=0.1`` stay readable)."""
    return esc(quote(path, safe="/=._-~"))


def fmt(value: Any) -> str:
    """A number or value as table text: 4 significant digits, '-' for None, yes/no.

    Example:
        >>> fmt(0.000352890159), fmt(12), fmt(True), fmt(None), fmt(float("nan"))
        ('0.0003529', '12', 'yes', '-', 'nan')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple) and len(value) <= 6:
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, default=str)
        return text if len(text) <= 120 else text[:117] + "..."
    return str(value)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("mfnn", "jax", "numpy", "matplotlib"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ------------------------------------------------------------------- the page

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1c2833;
background:#fbfcfc}
main{max-width:1100px;margin:0 auto;padding:12px 16px 40px}
h1{font-size:1.5em;margin:.3em 0;overflow-wrap:anywhere}
h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #d5d8dc}
nav{font-size:.9em;color:#566573;overflow-wrap:anywhere}
a{color:#1f618d}
p,li,td,th,figcaption,summary{overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-weight:600;
font-size:.9em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9em;margin:.3em 0}
th,td{border:1px solid #d5d8dc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eaeded}
table.sortable th{cursor:pointer}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.pass td.result{background:#d5f5e3;color:#145a32;font-weight:600}
tr.fail td.result{background:#fadbd8;color:#78281f;font-weight:600}
tr.info td.result{background:#d6eaf8;color:#1b4f72;font-weight:600}
.claim{background:#f4f6f7;border-left:4px solid #5d6d7e;padding:4px 14px}
figure{margin:10px 0;display:inline-block;max-width:100%;vertical-align:top}
figure img,figure video,img.full{max-width:100%;height:auto;border:1px solid #e5e8e8;
background:#fff}
figcaption{font-size:.85em;color:#566573}
pre{background:#f4f6f7;padding:8px;overflow-x:auto;font-size:.8em;max-width:100%}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}
.card{border:1px solid #d5d8dc;border-radius:8px;padding:10px;background:#fff;min-width:0}
.card h3{margin:.1em 0 .3em;font-size:1.05em;overflow-wrap:anywhere}
.card img{width:100%;height:150px;object-fit:contain;background:#fff}
.card p{font-size:.85em;margin:.3em 0}
.muted{color:#7f8c8d}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:8px}
figure.chart{margin:0;display:block}
svg.chart{width:100%;height:auto;background:#fff;border:1px solid #e5e8e8}
svg .frame{fill:none;stroke:#566573;stroke-width:.8}
svg .grid{stroke:#e5e8e8;stroke-width:.6}
svg .tk{font-size:9px;fill:#566573}
svg .al{font-size:10px;fill:#1c2833}
svg .ct{font-size:11px;font-weight:600;fill:#1c2833}
"""

# Sorts a table.sortable by the clicked column: numbers numerically, text otherwise.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v") || a.cells[col].textContent;
        var y = b.cells[col].getAttribute("data-v") || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; "
    f"style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'"
)


def _page(title: str, body: str, *, script: bool = False) -> str:
    """A whole HTML document: ``title`` (escaped here) and ``body`` (already safe HTML)."""
    js = f"<script>{_SCRIPT}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main>{js}</body></html>\n"
    )


def _badge(text: str, kind: str) -> str:
    from .style import color_of

    return f'<span class="badge" style="background:{color_of(kind)}">{esc(text)}</span>'


def _table(head: list[str], rows: list[list[str]], *, cls: str = "", row_cls=None) -> str:
    """A table (cells given as safe HTML), wrapped to scroll sideways on a narrow screen."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        rc = f' class="{esc(row_cls[i])}"' if row_cls else ""
        body.append(f"<tr{rc}>" + "".join(row) + "</tr>")
    klass = f' class="{esc(cls)}"' if cls else ""
    return (
        f'<div class="scroll"><table{klass}><thead><tr>{th}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table></div>"
    )


def _td(value: Any, *, cls: str = "") -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    klass = " ".join(c for c in (cls, "num" if numeric else "") if c)
    attr = f' class="{klass}"' if klass else ""
    data = f' data-v="{esc(repr(float(value)))}"' if numeric else ""
    return f"<td{attr}{data}>{esc(fmt(value))}</td>"


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in str(text).split("\n\n") if p.strip()]
    return "".join(f"<p>{esc(' '.join(p.split()))}</p>" for p in parts)


def _checks_table(checks: dict[str, Any], informational: dict[str, Any] | None = None) -> str:
    """One row per check: its name, the statistic, the rule, and pass / fail / info."""
    if not checks:
        return '<p class="muted">No checks.</p>'
    informational = informational or {}
    rows, classes = [], []
    for name, c in checks.items():
        c = c if isinstance(c, dict) else {"value": c}
        reason = c.get("reason") or informational.get(name)
        if c.get("informational"):
            kind, result = "info", "info"
        else:
            kind = "pass" if c.get("passed") else "fail"
            result = kind
        rule = str(c.get("expected", ""))
        if reason:
            rule += f" (informational: {reason})"
        rows.append(
            [f"<td>{esc(name)}</td>", _td(c.get("value")), f"<td>{esc(rule)}</td>",
             f'<td class="result">{result}</td>']
        )  # fmt: skip
        classes.append(f"check {kind}")
    return _table(["check", "value", "rule (threshold)", "result"], rows, cls="checks sortable",
                  row_cls=classes)  # fmt: skip


def _verdict(checks: dict[str, Any]) -> tuple[int, int]:
    counted = [c for c in checks.values() if isinstance(c, dict) and not c.get("informational")]
    return sum(bool(c.get("passed")) for c in counted), len(counted)


def _figures(root: Path, rels: list[str]) -> str:
    """Each existing file of ``rels`` as a figure (an ``.mp4`` as a video, a ``.gif`` or a
    ``.png`` as an image linking the file)."""
    out = []
    for rel in rels:
        if not (root / rel).is_file():
            continue
        if rel.endswith(".mp4"):
            out.append(_media(root, rel, rel))
            continue
        out.append(
            f'<figure><a href="{_href(rel)}"><img src="{_href(rel)}" alt="{esc(rel)}">'
            f"</a><figcaption>{esc(rel)}</figcaption></figure>"
        )
    return "".join(out)


def _media(root: Path, rel: str, caption: str) -> str:
    if rel.endswith(".mp4"):
        tag = (
            f'<video src="{_href(rel)}" controls muted loop autoplay playsinline '
            f'preload="metadata"></video>'
        )
    else:
        tag = f'<img src="{_href(rel)}" alt="{esc(caption)}">'
    return f"<figure>{tag}<figcaption>{esc(caption)}</figcaption></figure>"


def _files(root: Path, names: list[str]) -> str:
    links = [f'<a href="{_href(n)}">{esc(n)}</a>' for n in names if (root / n).exists()]
    return "<p>Files: " + " &middot; ".join(links) + "</p>" if links else ""


def _footer(timing: dict[str, Any]) -> str:
    versions = _versions()
    rows = [[f"<td>{esc(k)}</td>", _td(v)] for k, v in timing.items() if v is not None]
    built = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    vs = ", ".join(f"{k} {v}" for k, v in versions.items())
    table = _table(["timing", "value"], rows) if rows else ""
    return (
        f'<h2>Versions and timing</h2>{table}<p class="muted">Report built {esc(built)} '
        f"with {esc(vs)}.</p>"
    )


def _config_block(text: str, title: str = "Resolved config") -> str:
    return (
        f"<h2>{esc(title)}</h2><details><summary>config.yaml</summary>"
        f"<pre>{esc(text)}</pre></details>"
    )


def _nav(links: list[tuple[str, str]]) -> str:
    if not links:
        return ""
    parts = [f'<a href="{_href(h)}">{esc(t)}</a>' for t, h in links]
    return "<nav>" + " &rsaquo; ".join(parts) + "</nav>"


# ---------------------------------------------------------------- metrics figure

# panels of the metrics charts: (title, columns); the columns a run lacks are left out
_PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("risk", ("loss", "test_loss")),
    ("energy", ("energy", "free_energy")),
    ("dissipation", ("dissipation", "jump_dissipation")),
    ("energy identity", ("energy_rel_residual",)),
    ("movement", ("movement",)),
    ("W2 distances", ("w2_initial", "w2_teacher", "w2_reference")),
    ("entropy", ("entropy",)),
    ("inverse temperature", ("beta",)),
    ("grid", ("mass_error", "boundary_mass", "cfl")),
]
_SKIP = {"step", "t", "energy_residual", "min_density"}
_ABS = {"energy_rel_residual", "mass_error"}  # drawn as |value|
# plain-text names of the columns (an SVG chart has no TeX)
_TEXT = {
    "loss": "risk R (train)",
    "test_loss": "risk R (test)",
    "energy": "energy E",
    "free_energy": "free energy F = E - H/beta",
    "dissipation": "dissipation ∫|∇ δE/δμ|² dμ",
    "jump_dissipation": "jump dissipation",
    "energy_rel_residual": "|dE/dt + dissipation| / dissipation",
    "movement": "|θ - θ₀| / |θ₀|",
    "w2_initial": "W2(μ_t, μ_0)",
    "w2_teacher": "W2(μ_t, ρ*)",
    "w2_reference": "W2(μ_t, ν_t) (reference run)",
    "entropy": "entropy H (kNN)",
    "beta": "β(t)",
    "mass_error": "|∫ρ - 1|",
    "boundary_mass": "mass in the outer cells",
    "cfl": "CFL number",
}
_PALETTE = ("#2471a3", "#d35400", "#1e8449", "#7d3c98", "#c0392b", "#117a65", "#7e5109",
            "#34495e")  # fmt: skip
_MAX_POINTS = 600  # per series: longer ones are thinned (every k-th row, the last kept)


def metric_panels(metrics: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The panels of a run's metrics charts: (title, columns), the named groups first
    (risk, energy, dissipation, energy identity, movement, W2, ...), the teacher-student
    overlaps together, then every other recorded column alone; at most 12."""
    panels = []
    used = set(_SKIP)
    for name, cols in _PANELS:
        present = [c for c in cols if c in metrics]
        used.update(cols)
        if present:
            panels.append((name, present))
    rest = [c for c in metrics if c not in used]
    overlaps = [c for c in rest if c.split("_")[0] in ("Q", "R", "T")]
    if overlaps:
        panels.append(("overlaps", overlaps[:8]))
    panels += [(c, [c]) for c in rest if c not in overlaps]
    return panels[:12]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 x 10^k apart) covering [lo, hi].

    Example:
        >>> _nice_ticks(0.0, 1.0)
        [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    import math

    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def _tick_text(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0"


def svg_chart(t, series: dict[str, Any], *, title: str, ylabel: str) -> str:
    """One inline SVG chart of ``series`` {label: y} against ``t``: a log y axis when the
    values stay positive and span a decade (`mfnn.style.log_scale`), linear otherwise;
    round ticks; NaN breaks a line; a legend under the chart. Returns safe HTML.

    Drawn by hand (no image file, no plotting library): a chart costs well under a
    millisecond, so a report of an experiment with a hundred sub-runs stays fast.
    """
    import math

    import numpy as np

    from .style import log_scale

    t = np.asarray(t, float)
    ys = {k: np.asarray(v, float) for k, v in series.items()}
    log = log_scale(*ys.values())
    step = max(1, -(-t.size // _MAX_POINTS))
    keep = np.unique(np.r_[np.arange(0, t.size, step), t.size - 1]) if t.size else t
    w, h, left, right, top, bottom = 360, 220, 62, 12, 26, 40
    pw, ph = w - left - right, h - top - bottom
    tv = t[keep]
    finite_t = tv[np.isfinite(tv)]
    x0, x1 = (float(finite_t.min()), float(finite_t.max())) if finite_t.size else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1.0
    vals = np.concatenate([y[keep] for y in ys.values()]) if ys else np.zeros(0)
    vals = vals[np.isfinite(vals) & ((vals > 0) if log else True)]
    if vals.size == 0:
        return ""
    if log:
        y0, y1 = math.floor(math.log10(vals.min())), math.ceil(math.log10(vals.max()))
        y1 = y1 if y1 > y0 else y0 + 1
        every = max(1, -(-(y1 - y0) // 6))
        yt = [10.0**k for k in range(y0, y1 + 1, every)]
        ymap = lambda v: (math.log10(v) - y0) / (y1 - y0)  # noqa: E731
    else:
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
        lo, hi = lo - pad, hi + pad
        yt = [v for v in _nice_ticks(lo, hi) if lo <= v <= hi]
        ymap = lambda v: (v - lo) / (hi - lo)  # noqa: E731

    def px(x: float) -> float:
        return left + pw * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + ph * (1.0 - ymap(y))

    parts = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}">',
        f'<text x="{w / 2}" y="15" text-anchor="middle" class="ct">{esc(title)} '
        f"({'log' if log else 'linear'} scale)</text>",
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>',
    ]
    for v in yt:
        yy = py(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" '
                     'class="grid"/>')  # fmt: skip
        parts.append(f'<text x="{left - 4}" y="{yy + 3:.1f}" text-anchor="end" class="tk">'
                     f"{esc(_tick_text(v))}</text>")  # fmt: skip
    for v in _nice_ticks(x0, x1):
        xx = px(v)
        parts.append(f'<text x="{xx:.1f}" y="{top + ph + 13}" text-anchor="middle" '
                     f'class="tk">{esc(_tick_text(v))}</text>')  # fmt: skip
    parts.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle" class="al">t'
                 "</text>")  # fmt: skip
    parts.append(f'<text transform="translate(12 {top + ph / 2}) rotate(-90)" '
                 f'text-anchor="middle" class="al">{esc(ylabel)}</text>')  # fmt: skip
    legend = []
    for i, (label, y) in enumerate(ys.items()):
        color = _PALETTE[i % len(_PALETTE)]
        yk = y[keep]
        ok = np.isfinite(yk) & np.isfinite(tv) & ((yk > 0) if log else True)
        runs_, cur = [], []
        for x, v, good in zip(tv, yk, ok, strict=True):
            if good:
                cur.append(f"{px(float(x)):.1f},{py(float(v)):.1f}")
            elif cur:
                runs_.append(cur)
                cur = []
        if cur:
            runs_.append(cur)
        for pts in runs_:
            if len(pts) == 1:
                cx, cy = pts[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            else:
                parts.append(f'<polyline points="{" ".join(pts)}" fill="none" '
                             f'stroke="{color}" stroke-width="1.4"/>')  # fmt: skip
        legend.append(f'<span style="color:{color}">&#9632;</span> {esc(label)}')
    parts.append("</svg>")
    return (
        '<figure class="chart">' + "".join(parts)
        + f"<figcaption>{' &nbsp; '.join(legend)}</figcaption></figure>"
    )  # fmt: skip


def metrics_charts(metrics: dict[str, Any]) -> str:
    """The run's recorded metrics against t as inline SVG charts (`metric_panels`,
    `svg_chart`); an empty string when nothing was recorded."""
    import numpy as np

    t = metrics.get("t")
    if t is None or len(t) == 0:
        return ""
    out = []
    for name, cols in metric_panels(metrics):
        series = {}
        for c in cols:
            y = metrics[c]
            series[_TEXT.get(c, c)] = np.abs(y) if c in _ABS else y
        ylabel = _TEXT.get(cols[0], cols[0]) if len(cols) == 1 else name
        out.append(svg_chart(t, series, title=name, ylabel=ylabel))
    return '<div class="charts">' + "".join(out) + "</div>"


# ----------------------------------------------------------------------- reports


@dataclasses.dataclass(frozen=True)
class _Up:
    """The page above a report (its relative link and title)."""

    href: str
    title: str


def _parent_link(path: Path) -> _Up | None:
    """The experiment or sweep page above a sub-run directory, when it has a report."""
    parent = path.parent.parent
    if path.parent.name in ("runs", "points") and (parent / REPORT).is_file():
        return _Up(f"../../{REPORT}", parent.name)
    return None


def _describe_run(cfg: dict[str, Any]) -> str:
    """One line naming the model and the dynamics of a run config."""
    model, dyn = cfg.get("model") or {}, cfg.get("dynamics") or {}
    parts = [
        f"{model.get('kind', 'two_layer')} model",
        f"width m = {model.get('width')}" if model.get("width") else "",
        f"activation {model.get('activation')}" if model.get("activation") else "",
        f"scaling {model.get('scaling')}" if model.get("scaling") else "",
        f"dynamics {dyn.get('kind', 'gradient_flow')}",
        f"dt = {dyn.get('dt')}" if dyn.get("dt") is not None else "",
        f"{dyn.get('steps')} steps" if dyn.get("steps") is not None else "",
        f"dtype {cfg.get('dtype')}" if cfg.get("dtype") else "",
    ]
    return ", ".join(p for p in parts if p)


def _run_report(path: Path, *, animate: bool, up: _Up | None, media: str = "auto") -> Path:
    t0 = time.perf_counter()
    summary = _read_json(path / "summary.json")
    cfg_text = (path / "config.yaml").read_text() if (path / "config.yaml").is_file() else ""
    cfg = _read_yaml(path / "config.yaml")
    name = cfg.get("name") or path.name
    status = summary.get("status", "unknown")
    checks = summary.get("checks") or {}
    held, counted = _verdict(checks)
    from .rundir import read_metrics

    metrics = read_metrics(path) if (path / "metrics.csv").is_file() else {}
    assets = path / ASSETS
    body = [_nav([(up.title, up.href)] if up else [])]
    body.append(f"<h1>Run {esc(name)}</h1>")
    verdict = f"{held}/{counted} checks pass" if counted else "no checks"
    body.append(
        f"<p>{_badge(status, status)} {_badge(verdict, 'pass' if held == counted else 'fail')}"
        f"</p><p>{esc(_describe_run(cfg))}</p>"
    )
    if summary.get("message"):
        body.append(f"<p>{esc(summary['message'])}</p>")
    if summary.get("divergence"):
        div = summary["divergence"]
        rows = [[f"<td>{esc(k)}</td>", _td(v)] for k, v in div.items()]
        body.append("<h2>Divergence</h2>" + _table(["what", "value"], rows))
    body.append("<h2>Checks</h2>" + _checks_table(checks))
    final = summary.get("final") or {}
    if final:
        rows = [[f"<td>{esc(k)}</td>", _td(v)] for k, v in final.items()]
        body.append("<h2>Final record</h2>" + _table(["metric", "value"], rows))
    charts = metrics_charts(metrics)
    body.append("<h2>Metrics</h2>" + (charts or '<p class="muted">No metrics recorded.</p>'))
    anim = None
    if animate:
        from .animate import animate_run

        anim = animate_run(path, fmt=media)
    else:
        for suffix in (".mp4", ".gif"):
            if (assets / f"particles{suffix}").is_file():
                anim = assets / f"particles{suffix}"
    if anim is not None:
        rel = anim.relative_to(path).as_posix()
        body.append("<h2>The moving measure</h2>" + _media(path, rel, "particles over time"))
    figs = sorted(p.relative_to(path).as_posix() for p in (path / "figures").glob("*.png"))
    if figs:
        body.append("<h2>Figures</h2>" + _figures(path, figs))
    body.append(
        _files(path, ["config.yaml", "metrics.csv", "summary.json", "predictions.npz",
                      "hessian.json", "checkpoint.npz"])
    )  # fmt: skip
    if cfg_text:
        body.append(_config_block(cfg_text))
    steps = (cfg.get("dynamics") or {}).get("steps")
    wall = summary.get("wall_s")
    timing = {
        "mfnn version of the run": cfg.get("mfnn_version"),
        "wall time (s)": wall,
        "steps": summary.get("final_step", steps),
        "steps per second": (summary.get("final_step") or 0) / wall if wall else None,
        "report time (s)": time.perf_counter() - t0,
    }
    body.append(_footer(timing))
    out = path / REPORT
    _write(out, _page(f"mfnn run {name}", "\n".join(body), script=True))
    return out


def _sub_table(root: Path, entries: dict[str, dict[str, Any]], folder: str) -> str:
    """The sub-runs of an experiment (``runs/``): link, status and their scalar entries."""
    keys: list[str] = []
    for e in entries.values():
        for k, v in e.items():
            if k not in keys and k != "message" and not isinstance(v, dict | list):
                keys.append(k)
    rows, classes = [], []
    for name, e in entries.items():
        sub = root / folder / name
        target = next(
            (f"{folder}/{name}/{f}" for f in (REPORT, "summary.json", "result.json")
             if (sub / f).is_file()), None,
        )  # fmt: skip
        cell = f'<a href="{_href(target)}">{esc(name)}</a>' if target else esc(name)
        rows.append([f"<td>{cell}</td>"] + [_td(e.get(k)) for k in keys])
        classes.append(f"run {e.get('status', '')}")
    return _table(["run", *keys], rows, cls="sortable", row_cls=classes)


def _experiment_report(path: Path, *, animate: bool, up: _Up | None, media: str = "auto") -> Path:
    t0 = time.perf_counter()
    summary = _read_json(path / "summary.json")
    cfg_text = (path / "config.yaml").read_text() if (path / "config.yaml").is_file() else ""
    name = summary.get("experiment") or path.name
    runs = summary.get("runs") or {}
    me = _Up(f"../../{REPORT}", str(name))
    made = []
    animated = 0
    for sub in runs:  # plan order: the first MAX_ANIMATED sub-runs are animated
        d = path / "runs" / sub
        if d.is_dir() and directory_kind_or_none(d) in (RUN, EXPERIMENT, SWEEP):
            now = animate and animated < MAX_ANIMATED
            made.append((sub, write_report(d, animate=now, up=me, fmt=media)))
            animated += now
    status = summary.get("status", "unknown")
    checks = summary.get("checks") or {}
    held, counted = _verdict(checks)
    passed = bool(summary.get("passed"))
    verdict = ("claim held" if passed else "claim NOT held") + f" ({held}/{counted} checks)"
    body = [_nav([(up.title, up.href)] if up else [])]
    body.append(f"<h1>Experiment {esc(name)}</h1>")
    if summary.get("headline"):
        body.append(f"<p><em>{esc(summary['headline'])}</em></p>")
    body.append(f"<p>{_badge(status, status)} {_badge(verdict, 'pass' if passed else 'fail')}</p>")
    if summary.get("message"):
        body.append(f"<p>{esc(summary['message'])}</p>")
    if summary.get("claim"):
        body.append(f'<h2>Claim</h2><div class="claim">{_paragraphs(summary["claim"])}</div>')
    body.append("<h2>Checks</h2>" + _checks_table(checks, summary.get("informational")))
    figs = [f for f in summary.get("figures") or [] if isinstance(f, str)]
    if not figs:
        figs = sorted(p.relative_to(path).as_posix() for p in (path / "figures").glob("*.png"))
    if figs:
        body.append("<h2>Figures</h2>" + _figures(path, figs))
    movies = []
    for sub, _ in made:
        for suffix in (".mp4", ".gif"):
            rel = f"runs/{sub}/{ASSETS}/particles{suffix}"
            if (path / rel).is_file():
                movies.append(_media(path, rel, f"{sub}: particles over time"))
                break
    if movies:
        body.append("<h2>The moving measure</h2>" + "".join(movies[:6]))
        if len(movies) > 6:
            body.append(f'<p class="muted">{len(movies) - 6} more in the sub-run reports.</p>')
    if len(made) > MAX_ANIMATED and animate:
        body.append(
            f'<p class="muted">The first {MAX_ANIMATED} of {len(made)} sub-runs are animated; '
            "<code>mfnn report DIR/runs/NAME</code> animates any other.</p>"
        )
    if runs:
        body.append("<h2>Sub-runs</h2>" + _sub_table(path, runs, "runs"))
    known = {"experiment", "params", "status", "passed", "final_loss", "runs", "checks",
             "informational", "figures", "claim", "timing", "wall_s", "message",
             "headline"}  # fmt: skip
    stats = {k: v for k, v in summary.items() if k not in known}
    if stats:
        rows = [[f"<td>{esc(k)}</td>", _td(v)] for k, v in stats.items()]
        body.append("<h2>Statistics</h2>" + _table(["statistic", "value"], rows))
    params = summary.get("params") or {}
    if params:
        rows = [[f"<td>{esc(k)}</td>", _td(v)] for k, v in params.items()]
        body.append("<h2>Parameters</h2>" + _table(["param", "value"], rows))
    body.append(_files(path, ["config.yaml", "summary.json"]))
    if cfg_text:
        body.append(_config_block(cfg_text))
    timing = dict(summary.get("timing") or {})
    timing = {k: v for k, v in timing.items() if not isinstance(v, list | dict)}
    cfg = _read_yaml(path / "config.yaml")
    timing = {"mfnn version of the run": cfg.get("mfnn_version"),
              "wall time (s)": summary.get("wall_s"), **timing,
              "report time (s)": time.perf_counter() - t0}  # fmt: skip
    body.append(_footer(timing))
    out = path / REPORT
    _write(out, _page(f"mfnn experiment {name}", "\n".join(body), script=True))
    return out


def _read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)
    except OSError:
        return [], []


def _number(text: str) -> Any:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def _sweep_report(path: Path, *, animate: bool, up: _Up | None, media: str = "auto") -> Path:
    t0 = time.perf_counter()
    sweep = _read_json(path / "sweep.json")
    points = sweep.get("points") or {}
    me = _Up(f"../../{REPORT}", path.name)
    for name in sorted(points):
        d = path / "points" / name
        if d.is_dir() and directory_kind_or_none(d) in (RUN, EXPERIMENT):
            write_report(d, animate=animate, up=me, fmt=media)
    head, rows = _read_table(path / "table.csv")
    statuses: dict[str, int] = {}
    cells, classes = [], []
    for row in rows:
        st = row.get("status", "")
        statuses[st] = statuses.get(st, 0) + 1
        name = row.get("point", "")
        sub = path / "points" / name
        summary = _read_json(sub / "summary.json")
        held, counted = _verdict(summary.get("checks") or {})
        target = next((f"points/{name}/{f}" for f in (REPORT, "summary.json")
                       if (sub / f).is_file()), None)  # fmt: skip
        link = f'<a href="{_href(target)}">{esc(name)}</a>' if target else esc(name)
        line = [f"<td>{link}</td>"]
        line += [_td(_number(row.get(k, ""))) for k in head if k != "point"]
        line.append(_td(f"{held}/{counted}" if counted else "-"))
        cells.append(line)
        classes.append(f"point {st}")
    body = [_nav([(up.title, up.href)] if up else [])]
    body.append(f"<h1>Sweep {esc(path.name)}</h1>")
    body.append(
        "<p>" + " ".join(_badge(f"{n} {st}", st) for st, n in sorted(statuses.items())) + "</p>"
    )
    grid = sweep.get("grid") or {}
    if grid:
        rows_g = [[f"<td>{esc(k)}</td>", f"<td>{esc(fmt(v))}</td>"] for k, v in grid.items()]
        body.append("<h2>Grid</h2>" + _table(["key", "values"], rows_g))
    body.append(
        "<h2>Points</h2><p class=\"muted\">Click a column header to sort.</p>"
        + _table([*head, "checks"] if head else ["point"], cells, cls="sortable points",
                 row_cls=classes)
    )  # fmt: skip
    figs = sorted(p.relative_to(path).as_posix() for p in (path / "figures").glob("*.png"))
    if figs:
        body.append("<h2>Aggregated figure</h2>" + _figures(path, figs))
    body.append(_files(path, ["sweep.json", "table.csv"]))
    base = sweep.get("base")
    if isinstance(base, dict):
        body.append(_config_block(yaml.safe_dump(base, sort_keys=False), "Base config"))
    walls = [_number(r.get("wall_s", "")) for r in rows]
    walls = [w for w in walls if isinstance(w, int | float)]
    body.append(_footer({"points": len(rows), "sum of point wall times (s)": sum(walls) or None,
                         "report time (s)": time.perf_counter() - t0}))  # fmt: skip
    out = path / REPORT
    _write(out, _page(f"mfnn sweep {path.name}", "\n".join(body), script=True))
    return out


def _write(path: Path, text: str) -> None:
    from .rundir import atomic_write_text

    atomic_write_text(path, text)


def directory_kind_or_none(path: Path) -> str | None:
    """`directory_kind`, or None for a directory that is none of the kinds."""
    try:
        return directory_kind(path)
    except ConfigError:
        return None


def write_report(
    path: str | os.PathLike, *, animate: bool = True, up: _Up | None = None, fmt: str = "auto"
) -> Path:
    """Write ``PATH/report.html`` for a run, a sweep or an experiment directory.

    An experiment's sub-runs and a sweep's points get their own reports first (each links
    back up); a run's report draws its metrics (inline SVG charts) and, with
    ``animate``, animates its snapshots (``report/particles.gif`` or ``.mp4``,
    `mfnn.animate.animate_run`; ``fmt`` "auto", "gif" or "mp4" as there). Returns the path
    of the page.

    Raises:
        ConfigError: ``path`` is not a run, sweep or experiment directory.
    """
    if fmt not in ("auto", "gif", "mp4"):
        raise ConfigError(f"`--format` must be auto, gif or mp4; got {fmt!r}.")
    path = Path(path)
    kind = directory_kind(path)
    up = up if up is not None else _parent_link(path)
    if kind == SWEEP:
        return _sweep_report(path, animate=animate, up=up, media=fmt)
    if kind == EXPERIMENT:
        return _experiment_report(path, animate=animate, up=up, media=fmt)
    if kind == RUN:
        return _run_report(path, animate=animate, up=up, media=fmt)
    raise ConfigError(
        f"`PATH` {str(path)!r} holds the result.json of a library computation, not a run; "
        "report the experiment directory above it."
    )


# ------------------------------------------------------------------------ gallery


def experiment_dirs(root: str | os.PathLike) -> list[Path]:
    """The experiment directories under ``root`` (itself included), sorted by path; an
    experiment's own ``runs/`` are not searched."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if "summary.json" in filenames and "experiment" in _read_json(d / "summary.json"):
            found.append(d)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
    return sorted(found)


def _headline(summary: dict[str, Any], limit: int = 300) -> str:
    """The one line a card shows: the experiment's ``headline`` (its summary line, as
    ``mfnn experiments`` lists it), else the registry's for its name, else the claim's
    first paragraph cut at ``limit`` characters."""
    if summary.get("headline"):
        return str(summary["headline"])
    from .experiments import EXPERIMENTS

    exp = EXPERIMENTS.get(str(summary.get("experiment")))
    if exp is not None:
        return exp.summary
    first = " ".join(str(summary.get("claim", "")).split("\n\n")[0].split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


def write_gallery(root: str | os.PathLike, *, reports: bool = True, animate: bool = True) -> Path:
    """Write ``ROOT/index.html``: one card per experiment directory under ``root`` (its
    name, verdict, the first sentence of its claim, a thumbnail of its first figure, its
    wall time), each linking its report. With ``reports``, an experiment whose report is
    missing or older than its summary gets one first (`write_report`).

    Raises:
        ConfigError: ``root`` is not a directory, or holds no experiment directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"`DIR` {str(root)!r} is not a directory.")
    dirs = experiment_dirs(root)
    if not dirs:
        raise ConfigError(
            f"`DIR` {str(root)!r} holds no experiment directory (a summary.json written by "
            "`mfnn run NAME`); run experiments into it first, e.g. `make gallery`."
        )
    cards = []
    n_pass, total = 0, 0.0
    for d in dirs:
        summary = _read_json(d / "summary.json")
        page = d / REPORT
        stale = not page.is_file() or ((d / "summary.json").stat().st_mtime > page.stat().st_mtime)
        if reports and stale:
            write_report(d, animate=animate)
        rel = d.relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        name = summary.get("experiment") or d.name
        passed = bool(summary.get("passed"))
        n_pass += passed
        held, counted = _verdict(summary.get("checks") or {})
        status = summary.get("status", "unknown")
        verdict = ("claim held" if passed else "claim NOT held") + f" ({held}/{counted})"
        figs = [f for f in summary.get("figures") or [] if isinstance(f, str)]
        thumb = next((f for f in figs if "overview" in f), figs[0] if figs else None)
        img = (
            f'<a href="{_href(prefix + REPORT)}"><img src="{_href(prefix + thumb)}" '
            f'alt="{esc(name)}: {esc(thumb)}"></a>'
            if thumb and (d / thumb).is_file()
            else ""
        )
        link = prefix + REPORT if (d / REPORT).is_file() else prefix + "summary.json"
        wall = summary.get("wall_s")
        total += wall if isinstance(wall, int | float) else 0.0
        cards.append(
            f'<div class="card {"pass" if passed else "fail"}">'
            f'<h3><a href="{_href(link)}">{esc(name)}</a></h3>'
            f"<p>{_badge(verdict, 'pass' if passed else 'fail')} "
            f"{'' if status == 'completed' else _badge(status, status)}</p>{img}"
            f"<p>{esc(_headline(summary))}</p>"
            f'<p class="muted">{esc(rel)} &middot; {esc(fmt(wall))} s</p></div>'
        )
    body = (
        f"<h1>mfnn gallery</h1><p>{len(dirs)} experiments, {n_pass} claims held.</p>"
        f'<div class="cards">{"".join(cards)}</div>' + _footer({"experiments": len(dirs)})
    )
    out = root / GALLERY
    _write(out, _page("mfnn gallery", body))
    return out
