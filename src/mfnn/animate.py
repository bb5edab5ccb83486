r"""Animations of a run's measure: the particles (or the grid density) at every snapshot.

`animate_run` reads a run directory (`mfnn.rundir`: ``config.yaml`` and
``snapshots/step_*.npz``) and writes ``RUN_DIR/report/particles.gif`` (or ``.mp4``): one
frame per snapshot (at most ``max_frames``, evenly spaced by index, the first and the last
kept). A frame shows t = step x ``dynamics.dt`` and the step in its first panel's corner,
the run (model, width, scaling) as the figure's title and the view's name as each panel's
title. Axis limits, histogram bins and colour scales are fixed across frames, so what
moves on screen is the measure.

What a frame shows is chosen by the model's type; each panel is a view, a map from a
snapshot's arrays (`AbstractModel.particle_arrays`) to what it draws (`ParticleView`, or
`DensityView` for a grid density):

- two-layer network, d = 1, with bias and a ReLU unit (the activation of
  `mfnn.models.activations.ACTIVATIONS` with a kink at 0: `KINKED`), `BreakpointView`:
  neuron j at

      x_j = -b_j / w_j   (the breakpoint, where a_j relu(s (w_j x + b_j)) bends),
      y_j = s |a_j w_j|  (the change of that unit's slope across x_j),

  s the ``activation_scale``, coloured by a_j (blue a_j < 0, red a_j > 0). y_j is the
  unit's own slope change, *not* multiplied by the model's output factor alpha m^(-gamma)
  (the network's slope changes by alpha m^(-gamma) y_j there): in the mean-field scaling
  y_j is the O(1) coordinate of the particle, comparable across widths and with the atoms
  of the teacher measure. Neurons with w_j = 0 have no breakpoint and are not drawn.
- two-layer, d = 1, any other activation or no bias: `LinearView` of two moving
  coordinates, (w_j, b_j) or (w_j, a_j) (or (b_j, a_j) when w is frozen), coloured by the
  remaining coordinate; with one moving coordinate (no bias, a frozen or absent) a
  histogram of it (fixed bins).
- two-layer, d = 2: (w_{j,1}, w_{j,2}), coloured by a_j (by b_j without an output column).
- two-layer, d > 2: w_j projected on a fixed plane, (w_j . e_1, w_j . e_2): with a teacher
  e_1, e_2 orthonormalise its first two atoms' w (Gram-Schmidt; completed by a principal
  direction below if the atoms span a line), else the top-2 principal directions of the
  last snapshot's w (centred rows, SVD); the same plane in every frame.
- deep models, one panel per layer (at most 4, evenly spaced, first and last kept): the
  particles of layer l flattened, theta_j^l in R^(d^2) (wide ResNet: the N matrices of
  layer l; ensemble ResNet: every ResNet's matrix at layer l), projected on the top-2
  principal directions of layer l at the last snapshot (a histogram when d^2 = 1); a
  multilayer network's panels are the rows of W_1, ..., W_H (projected likewise) and a
  histogram of the output weights a_j.
- ``dynamics.kind: pde``, `DensityView`: the density on its grid, a curve on fixed y-limits
  (1-D) or an image with fixed colour limits (2-D; like ``figures/density.png``, the
  first coordinate on the vertical axis).

Teacher marks. With a two-layer teacher (``data.target: teacher`` or ``data.population``)
the teacher measure rho* = sum_i alpha_i delta_{c_i} (`mfnn.targets.teacher_measure`, when
it applies: a mean-field student of the teacher's activation) is drawn as stars at the
view's coordinates of its atoms c_i, size ~ alpha_i. Otherwise the teacher's neurons
(w_i, b_i of ``data.teacher``) are marked only in the coordinates that do not involve the
output weights: a coordinate that needs a_i is left out, so a mark becomes a vertical
(or horizontal) line, or none. Deep teachers (random draws) are not marked.

Axis limits (`frame_limits`): per frame and coordinate the order statistics at 0.25 % and
99.75 % (at most 0.25 % of a frame's points below, 0.25 % above: at least 99 % of every
frame inside the box); their min and max over the frames, the teacher marks included,
padded by 5 %. An axis whose limits reach more than 20 times the largest 90 % quantile
of |z| (heavy tails: the breakpoints of units with w_j near 0 spread like a Cauchy law)
is symlog, linear on that bulk (`symlog_threshold`; its label says so). A colour is a
fixed scale of 16 levels over all frames (`color_levels`: symmetric about 0 for a signed
quantity), shown by a colour bar; a one-colour panel has a legend. Above
``particles_max`` particles a scatter draws a fixed random subset (``default_rng(0)``,
the same indices in every frame) and the title says so; histograms count every particle.

Encoders: GIF through Pillow (a matplotlib dependency), with one adaptive 256-colour
palette computed from the first, middle and last frames, no dithering, ``optimize``,
``duration = 1000 / fps`` ms, ``loop = 0``; MP4 (H.264, yuv420p) through matplotlib's
`matplotlib.animation.FFMpegWriter`, which needs an ``ffmpeg`` executable on PATH
(``apt-get install ffmpeg``). ``fmt="auto"`` writes MP4 when ffmpeg is there, GIF
otherwise.

Speed (`Animation`): the figure is laid out and drawn once without its per-frame artists;
each frame restores that background, updates the artists (``set_offsets``,
``stairs.set_data``, ``line.set_ydata``, ``image.set_data``, the time) and draws only them
(Agg blitting) into the RGBA buffer the encoder takes (an MP4 frame goes to the writer as
a figure image, not a re-draw). A coloured scatter is drawn as 16 one-colour layers of
octagon markers, which Agg stamps (a colour per point costs 10x more). A panel is 5 x 4
inches at 80 dpi (400 x 320 pixels; several panels share at most 16 inches). Times and
file sizes: benchmarks/README.md (`benchmarks/bench_animate.py`, `bench_report.py`).
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .build import make_model
from .config import Config
from .errors import ConfigError
from .measure import atomic_write, read_npz
from .models import AbstractModel, EnsembleResNet, Multilayer, TwoLayer, WideResNet
from .rundir import list_snapshots, load_run_config
from .style import COLORS, DYNAMICS_COLORS
from .targets import Teacher, teacher_measure

FORMATS = ("auto", "gif", "mp4")
PARTICLES_MAX = 20_000
KINKED = ("relu",)
"""Activations of `mfnn.models.activations.ACTIVATIONS` with a kink at 0 (sigma' jumps
there): a unit of these bends at its breakpoint -b/w."""

PANEL_INCHES = (5.0, 4.0)
MAX_WIDTH_INCHES = 16.0  # several panels share this width (4 layers: 4 x 4 inches)
DPI = 80
MAX_LAYERS = 4
QUANTILE = 0.0025  # per frame and axis: at most this fraction of points left out each side
PAD = 0.05
BINS = 60

Arrays = Mapping[str, np.ndarray]


# ------------------------------------------------------------------------------ views


class ParticleView(abc.ABC):
    """One panel of particles: a map from a snapshot's arrays to points.

    `coordinates` returns the points, (m, 2) for a scatter (``dims`` = 2) or (m,) for a
    histogram (``dims`` = 1), and the colour of each point ((m,) or None for one colour).
    A new model adds a view by subclassing this and choosing it in `scene`; the drawing is
    shared.

    Attributes:
        dims: 2 (points in the plane: a scatter) or 1 (values: a histogram).
        title: the panel's title (the view's name).
        xlabel, ylabel: the quantity on each axis (a histogram's y-axis is the fraction
            of particles per bin).
        clabel: the quantity the colour shows (None: one colour).
    """

    dims: int
    title: str
    xlabel: str
    ylabel: str
    clabel: str | None

    @abc.abstractmethod
    def coordinates(self, arrays: Arrays) -> tuple[np.ndarray, np.ndarray | None]:
        """(points (m, 2) or values (m,), colour (m,) or None) of a snapshot's arrays."""


class BreakpointView(ParticleView):
    r"""ReLU units on R: (x_j, y_j) = (-b_j / w_j, s |a_j w_j|), coloured by a_j.

    The unit a_j relu(s (w_j x + b_j)) is 0 on one side of x_j = -b_j / w_j and affine
    with slope s a_j w_j on the other, so it bends at x_j by s |a_j w_j| (not multiplied
    by the model's output factor). A unit with w_j = 0 has no breakpoint: its point is
    NaN (not drawn).

    Example:
        >>> view = BreakpointView()
        >>> xy, c = view.coordinates({"a": np.array([2.0, -1.0]), "w": np.array([[1.0], [-0.5]]),
        ...                           "b": np.array([0.5, 0.25])})
        >>> xy.tolist(), c.tolist()
        ([[-0.5, 2.0], [0.5, 0.5]], [2.0, -1.0])
    """

    def __init__(self, activation_scale: float = 1.0):
        self.dims = 2
        self.scale = float(activation_scale)
        self.title = "ReLU breakpoints"
        self.xlabel = r"breakpoint $-b_j/w_j$"
        self.ylabel = r"slope change $|a_j w_j|$"
        if self.scale != 1.0:
            self.ylabel = rf"slope change ${self.scale:g}\,|a_j w_j|$"
        self.clabel = r"$a_j$"

    def coordinates(self, arrays: Arrays) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(arrays["a"], np.float64).reshape(-1)
        w = np.asarray(arrays["w"], np.float64).reshape(-1)
        b = np.asarray(arrays["b"], np.float64).reshape(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(w != 0, -b / np.where(w != 0, w, 1.0), np.nan)
        return np.stack([x, self.scale * np.abs(a * w)], axis=1), a


@dataclasses.dataclass(frozen=True)
class Block:
    """The rows (n, k) of one array of a particle file: ``key`` reshaped to one row per
    particle; for a deep model's per-layer array, the rows of layer ``layer`` (``layers``
    (L, N, d, d) of a wide ResNet: layer first; ``paths`` (N, L, d, d) of an ensemble:
    layer second).

    Example:
        >>> Block("paths", 1).rows({"paths": np.arange(16.0).reshape(2, 2, 2, 2)}).tolist()
        [[4.0, 5.0, 6.0, 7.0], [12.0, 13.0, 14.0, 15.0]]
    """

    key: str
    layer: int | None = None

    def rows(self, arrays: Arrays) -> np.ndarray:
        x = np.asarray(arrays[self.key], np.float64)
        if self.layer is not None:
            x = x[self.layer] if self.key == "layers" else x[:, self.layer]
        return x.reshape(x.shape[0], -1)


class LinearView(ParticleView):
    r"""Points z_j = P r_j: r_j the columns of ``blocks`` side by side, P = ``basis``
    (p, k) with p = 2 (a scatter) or p = 1 (a histogram of the values); coloured by the
    first column of ``color``. Coordinates are picked by unit rows of P, projections by
    orthonormal ones.

    Example:
        >>> view = LinearView([Block("w"), Block("b")], np.eye(2), color=Block("a"),
        ...                   title="neurons", xlabel="w", ylabel="b", clabel="a")
        >>> xy, c = view.coordinates({"a": np.array([3.0]), "w": np.array([[1.0]]),
        ...                           "b": np.array([2.0])})
        >>> xy.tolist(), c.tolist()
        ([[1.0, 2.0]], [3.0])
    """

    def __init__(
        self,
        blocks: Sequence[Block],
        basis: np.ndarray,
        *,
        color: Block | None = None,
        title: str,
        xlabel: str,
        ylabel: str = "fraction of particles per bin",
        clabel: str | None = None,
    ):
        basis = np.atleast_2d(np.asarray(basis, np.float64))
        if basis.shape[0] not in (1, 2):
            raise ValueError(f"a view's basis has 1 or 2 rows; got shape {basis.shape}.")
        self.blocks = tuple(blocks)
        self.basis = basis
        self.dims = basis.shape[0]
        self.color = color
        self.title, self.xlabel, self.ylabel, self.clabel = title, xlabel, ylabel, clabel

    def coordinates(self, arrays: Arrays) -> tuple[np.ndarray, np.ndarray | None]:
        rows = np.concatenate([blk.rows(arrays) for blk in self.blocks], axis=1)
        z = rows @ self.basis.T
        c = None if self.color is None else self.color.rows(arrays)[:, 0]
        return (z[:, 0] if self.dims == 1 else z), c


class DensityView:
    """The density of a ``dynamics.kind: pde`` run on its grid (snapshot arrays
    ``density``, ``low``, ``high``, ``cells``): a curve (1-D) or an image (2-D).

    ``columns`` name the grid's axes as columns of a particle file, ``(key, index)``
    (e.g. ``("w", 0)``), so that teacher atoms can be placed on the grid; ``labels`` are
    the axes' names.
    """

    def __init__(self, columns: Sequence[tuple[str, int]], labels: Sequence[str]):
        self.columns = tuple(columns)
        self.labels = tuple(labels)
        self.title = "density on the grid"

    def density(self, arrays: Arrays) -> np.ndarray:
        return np.asarray(arrays["density"], np.float64)

    def centres(self, arrays: Arrays) -> list[np.ndarray]:
        """The cell centres of each axis."""
        low, high = np.atleast_1d(arrays["low"]), np.atleast_1d(arrays["high"])
        cells = np.atleast_1d(arrays["cells"]).astype(int)
        return [
            lo + (np.arange(n) + 0.5) * (hi - lo) / n
            for lo, hi, n in zip(low, high, cells, strict=True)
        ]

    def atoms(self, arrays: Arrays) -> np.ndarray:
        """The grid coordinates (k, D) of atoms given as particle arrays."""
        cols = [Block(key).rows(arrays)[:, i] for key, i in self.columns]
        return np.stack(cols, axis=1)


View = ParticleView | DensityView


@dataclasses.dataclass(frozen=True)
class TeacherMarks:
    """Teacher atoms in the layout of a snapshot (``a``, ``w``, ``b``), their weights, and
    whether they are the teacher measure in the student's particle space (``exact``) or
    the teacher's raw neurons (``a`` NaN: coordinates involving it are not marked)."""

    arrays: dict[str, np.ndarray]
    weights: np.ndarray
    exact: bool

    @property
    def name(self) -> str:
        """The legend's name of the marks."""
        return r"teacher $\rho^*$" if self.exact else "teacher neurons (data.teacher)"


@dataclasses.dataclass(frozen=True)
class Scene:
    """What an animation of a run shows: the figure's name, its panels, the teacher, and
    the colour of what is drawn in one colour (`mfnn.style`: the scaling's colour for
    particles, the pde colour for a density)."""

    title: str
    views: tuple[View, ...]
    marks: TeacherMarks | None
    color: str = COLORS["ntk"]


# ----------------------------------------------------------------------- the planes


def principal_plane(rows: np.ndarray, k: int = 2) -> np.ndarray:
    """The top-``k`` principal directions (k, D) of ``rows`` (n, D): right singular vectors
    of the centred rows, each signed so that its largest entry is positive, completed by
    standard basis vectors (`orthonormal_completion`) when the rows span fewer than k.

    Example:
        >>> rows = np.array([[3.0, 0.0, 0.3], [-3.0, 0.0, -0.3], [0.0, 1.0, 0.0],
        ...                  [0.0, -1.0, 0.0]])
        >>> (np.round(principal_plane(rows), 3) + 0.0).tolist()
        [[0.995, 0.0, 0.1], [0.0, 1.0, 0.0]]
    """
    rows = np.asarray(rows, np.float64)
    dim = rows.shape[1]
    rows = rows[np.all(np.isfinite(rows), axis=1)]  # a diverged particle has no direction
    if rows.shape[0] < 2:
        return orthonormal_completion([], dim, k)
    _, s, vt = np.linalg.svd(rows - rows.mean(axis=0), full_matrices=False)
    top = float(s[0]) if s.size else 0.0
    keep = [v if v[np.argmax(np.abs(v))] > 0 else -v for v in vt[(s > 1e-12 * top) & (s > 0)]]
    return orthonormal_completion(keep[:k], dim, k)


def gram_schmidt(vectors: Sequence[np.ndarray], k: int = 2) -> list[np.ndarray]:
    """At most ``k`` orthonormal vectors from ``vectors`` in order (Gram-Schmidt; a vector
    in the span of the earlier ones, or zero, is skipped); e_i . v_i > 0 for the vector
    v_i that gave e_i.

    Example:
        >>> [e.round(4).tolist() for e in gram_schmidt([np.array([0.0, 2.0]),
        ...                                             np.array([0.0, -1.0]),
        ...                                             np.array([1.0, 1.0])])]
        [[0.0, 1.0], [1.0, 0.0]]
    """
    out: list[np.ndarray] = []
    for v in vectors:
        if len(out) == k:
            break
        v = np.asarray(v, np.float64)
        scale = float(np.linalg.norm(v))
        if not scale > 0:
            continue
        r = v.copy()
        for e in out:
            r -= (r @ e) * e
        norm = float(np.linalg.norm(r))
        if norm > 1e-9 * scale:
            out.append(r / norm)
    return out


def orthonormal_completion(vectors: Sequence[np.ndarray], dim: int, k: int = 2) -> np.ndarray:
    """`gram_schmidt` of ``vectors`` then of the standard basis of R^dim: k orthonormal
    rows (k, dim) whose first ones span the first independent ``vectors``.

    Example:
        >>> orthonormal_completion([np.array([2.0, 2.0, 0.0])], 3).round(4).tolist()
        [[0.7071, 0.7071, 0.0], [0.7071, -0.7071, 0.0]]
    """
    return np.stack(gram_schmidt([*vectors, *np.eye(dim)], k))


# ------------------------------------------------------------------------ the scene


def _column_label(key: str, index: int, d: int) -> str:
    if key == "w" and d > 1:
        return rf"$w_{{j,{index + 1}}}$"
    return rf"${key}_j$"


def _two_layer_views(
    model: TwoLayer, last: Arrays, marks: TeacherMarks | None
) -> list[ParticleView]:
    d = model.d
    present = list(model.present_blocks)
    if d == 1:
        if model.bias and model.activation in KINKED:
            return [BreakpointView(model.activation_scale)]
        moving = [blk for blk in present if blk in model.trainable]
        if len(moving) == 1:
            (blk,) = moving
            return [
                LinearView([Block(blk)], [[1.0]], title=f"neurons: ${blk}_j$", xlabel=f"${blk}_j$")
            ]
        # two moving coordinates on the axes: w first, then b, then a
        order = [blk for blk in ("w", "b", "a") if blk in moving][:2]
        rest = [blk for blk in ("a", "b", "w") if blk in present and blk not in order]
        color = rest[0] if rest else None
        return [
            LinearView(
                [Block(order[0]), Block(order[1])],
                np.eye(2),
                color=None if color is None else Block(color),
                title=f"neurons: $({order[0]}_j, {order[1]}_j)$",
                xlabel=f"${order[0]}_j$",
                ylabel=f"${order[1]}_j$",
                clabel=None if color is None else f"${color}_j$",
            )
        ]
    color = "a" if model.train_output else ("b" if model.bias else None)
    ckw = {
        "color": None if color is None else Block(color),
        "clabel": None if color is None else f"${color}_j$",
    }
    if d == 2:
        return [
            LinearView(
                [Block("w")],
                np.eye(2),
                title=r"input weights $w_j$",
                xlabel=_column_label("w", 0, 2),
                ylabel=_column_label("w", 1, 2),
                **ckw,
            )
        ]
    w_last = Block("w").rows(last)
    sym = ["e_1", "e_2"] if marks is not None else ["u_1", "u_2"]
    if marks is not None:
        # the plane of the teacher's first two independent w*; a principal direction of
        # the last snapshot completes it when the teacher's w* span a line
        teacher = gram_schmidt(list(np.asarray(marks.arrays["w"], np.float64)))
        basis = orthonormal_completion([*teacher, *principal_plane(w_last)], d)
        names = [r"$e_1 \propto w^*_1$", r"$e_2$: span$(w^*_1, w^*_2)$"]
        if len(teacher) < 2:
            names[1] = r"$e_2$: principal direction $\perp e_1$ (last snapshot)"
        title = r"$w_j$ on the plane of the teacher's $w^*$"
    else:
        basis = principal_plane(w_last)
        names = ["1st principal direction", "2nd principal direction"]
        title = r"$w_j$ on its top-2 principal plane (last snapshot)"
    return [
        LinearView(
            [Block("w")],
            basis,
            title=title,
            xlabel=rf"$w_j \cdot {sym[0]}$, " + names[0],
            ylabel=rf"$w_j \cdot {sym[1]}$, " + names[1],
            **ckw,
        )
    ]


def _evenly(n: int, k: int = MAX_LAYERS) -> list[int]:
    """At most k indices of range(n), evenly spaced, first and last included."""
    return sorted({int(i) for i in np.round(np.linspace(0, n - 1, min(n, k)))})


def _layer_view(block: Block, rows_last: np.ndarray, title: str, sym: str) -> LinearView:
    """A layer's particles: a histogram for one coordinate, the coordinates themselves
    for two, else the top-2 principal plane of the last snapshot."""
    k = rows_last.shape[1]
    if k == 1:
        return LinearView([block], [[1.0]], title=title, xlabel=f"${sym}$")
    if k == 2:
        return LinearView(
            [block],
            np.eye(2),
            title=title,
            xlabel=f"${sym}$, coordinate 1",
            ylabel=f"${sym}$, coordinate 2",
        )
    return LinearView(
        [block],
        principal_plane(rows_last),
        title=title + " (PCA plane of the last snapshot)",
        xlabel=rf"${sym} \cdot u_1$ (1st principal direction)",
        ylabel=rf"${sym} \cdot u_2$ (2nd principal direction)",
    )


def _deep_views(model: AbstractModel, last: Arrays) -> list[ParticleView]:
    if isinstance(model, WideResNet | EnsembleResNet):
        key = "layers" if isinstance(model, WideResNet) else "paths"
        views = []
        for layer in _evenly(model.depth):
            block = Block(key, layer)
            views.append(
                _layer_view(block, block.rows(last), f"layer {layer}", rf"\theta^{{{layer}}}_j")
            )
        return views
    if isinstance(model, Multilayer):
        names = [f"w{i}" for i in range(1, model.hidden + 1)] + ["a"]
        views = []
        for i in _evenly(len(names)):
            key = names[i]
            if key == "a":
                views.append(
                    LinearView([Block("a")], [[1.0]], title="output weights", xlabel="$a_j$")
                )
                continue
            layer = i + 1
            block = Block(key)
            views.append(
                _layer_view(
                    block, block.rows(last), f"layer {layer}: rows of $W_{layer}$", f"W_{layer}[j]"
                )
            )
        return views
    raise ConfigError(f"no animation view for a {type(model).__name__} model.")


def _teacher(cfg: Config, model: AbstractModel, run_dir: Path) -> TeacherMarks | None:
    """The teacher of a two-layer run as marks (None without one)."""
    data, spec = cfg.data, cfg.data.teacher
    has_teacher = data.population is not None or (data.path is None and data.target == "teacher")
    if spec is None or not has_teacher or not isinstance(model, TwoLayer):
        return None
    w, alpha, a, b = spec.w, spec.alpha, spec.a, spec.b
    if spec.path is not None:
        path = Path(spec.path).expanduser()
        if not path.is_absolute() and not path.exists():
            path = run_dir / path
        try:
            arrays = read_npz(path, "data.teacher.path", "teacher file")
        except ConfigError as exc:
            warnings.warn(f"no teacher marks: {exc}", stacklevel=3)
            return None
        w, alpha, a, b = (arrays.get(k) for k in ("w", "alpha", "a", "b"))
        if w is None:
            return None
    scale = cfg.model.activation_scale if spec.activation_scale is None else spec.activation_scale
    try:
        teacher = Teacher(w, alpha, a, b, spec.activation or cfg.model.activation, scale)
    except ConfigError as exc:  # a teacher file the run itself would have refused
        warnings.warn(f"no teacher marks: {exc}", stacklevel=3)
        return None
    weights = np.asarray(teacher.alpha, np.float64)
    try:
        atoms, _ = teacher_measure(teacher, model)
    except ConfigError:  # not a measure over the student's units: its raw neurons
        raw = {
            "a": np.full(weights.shape, np.nan),
            "w": np.asarray(teacher.w, np.float64),
            "b": np.asarray(teacher.b, np.float64),
        }
        return TeacherMarks(raw, weights, exact=False)
    arrays = {k: np.asarray(v, np.float64) for k, v in model.particle_arrays(atoms).items()}
    return TeacherMarks(arrays, weights, exact=True)


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def scene(
    run_dir: str | os.PathLike, cfg: Config | None = None, last: Arrays | None = None
) -> Scene:
    """The panels (views), teacher marks and name of the animation of ``run_dir``.

    Args:
        run_dir: a run directory with at least one snapshot.
        cfg: its config (default: read from ``config.yaml``).
        last: the arrays of its last snapshot (default: read from the file); principal
            planes are those of these particles.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir) if cfg is None else cfg
    if last is None:
        snaps = list_snapshots(run_dir)
        if not snaps:
            raise ConfigError(f"{str(run_dir)!r} has no snapshots (snapshots/step_*.npz).")
        last = _read(snaps[max(snaps)])
    ms = cfg.model
    if cfg.dynamics.kind == "pde":
        dim = len(np.atleast_1d(last["cells"]))
        d = dim - int(ms.train_output) - int(ms.bias)
        model = make_model(cfg, d, run_dir)
        columns, labels = [], []
        for blk in model.present_blocks:
            for i in range(model.d if blk == "w" else 1):
                columns.append((blk, i))
                labels.append(f"${blk}_{i + 1}$" if blk == "w" and model.d > 1 else f"${blk}$")
        cells = " x ".join(str(int(c)) for c in np.atleast_1d(last["cells"]))
        title = f"mean-field PDE of a two-layer {ms.activation} network, {cells} cells"
        marks = _teacher(cfg, model, run_dir)
        return Scene(title, (DensityView(columns, labels),), marks, DYNAMICS_COLORS["pde"])
    if ms.kind == "two_layer":
        w = np.asarray(last["w"])
        model = make_model(cfg, 1 if w.ndim == 1 else int(w.shape[1]), run_dir)
    elif ms.kind == "ensemble_resnet":
        model = make_model(cfg, int(np.shape(last["paths"])[-1]), run_dir)
    elif ms.kind == "wide_resnet":
        model = make_model(cfg, int(np.shape(last["layers"])[-1]), run_dir)
    else:
        w1 = np.asarray(last["w1"])
        model = make_model(cfg, int(w1.shape[1]), run_dir, int(w1.shape[0]))
    if isinstance(model, TwoLayer):
        marks = _teacher(cfg, model, run_dir)
        m = int(np.shape(last["w"])[0])
        title = f"two-layer {ms.activation} network, m = {m} ({model.scaling.name})"
        views = tuple(_two_layer_views(model, last, marks))
        return Scene(title, views, marks, COLORS[model.scaling.name])
    if isinstance(model, WideResNet):
        n = int(np.shape(last["layers"])[1])
        title = f"wide ResNet on $R^{model.d}$: L = {model.depth} layers of N = {n} units"
    elif isinstance(model, EnsembleResNet):
        n = int(np.shape(last["paths"])[0])
        title = f"ensemble of N = {n} ResNets on $R^{model.d}$ of depth L = {model.depth}"
    else:
        title = f"multilayer network: H = {model.hidden} hidden layers of N = {model.units}"
    title += f" ({model.scaling.name})"
    return Scene(title, tuple(_deep_views(model, last)), None, COLORS[model.scaling.name])


# ---------------------------------------------------------------------- the drawing


def _subset(n: int, k: int) -> np.ndarray | None:
    """The fixed random subset of k of n particles (None when n <= k)."""
    if n <= k:
        return None
    return np.sort(np.random.default_rng(0).choice(n, size=k, replace=False))


def _pad(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    span = hi - lo
    span = np.where(span > 0, span, np.maximum(np.abs(hi), 1.0) * 0.2)
    return lo - PAD * span, hi + PAD * span


def frame_limits(
    points: Sequence[np.ndarray], extra: np.ndarray | None = None, q: float = QUANTILE
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed axis limits (lo (p,), hi (p,)) for frames of points (n_i, p): the min over
    frames of each axis's q-quantile, the max of its (1 - q)-quantile, widened to the
    finite entries of ``extra`` (teacher marks), padded by 5 % of the span.

    Example:
        >>> lo, hi = frame_limits([np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])], q=0.0)
        >>> np.round(lo, 9).tolist(), np.round(hi, 9).tolist()
        ([-0.15], [3.15])
    """
    p = points[0].shape[1]
    lo, hi = np.full(p, np.inf), np.full(p, -np.inf)
    for x in points:
        for j in range(p):
            col = x[:, j][np.isfinite(x[:, j])]
            if col.size:
                # order statistics: at most q n points lie below lo and q n above hi
                lo[j] = min(lo[j], float(np.quantile(col, q, method="lower")))
                hi[j] = max(hi[j], float(np.quantile(col, 1.0 - q, method="higher")))
    if extra is not None:
        for j in range(p):
            col = extra[:, j][np.isfinite(extra[:, j])]
            if col.size:
                lo[j], hi[j] = min(lo[j], col.min()), max(hi[j], col.max())
    lo = np.where(np.isfinite(lo), lo, -1.0)
    hi = np.where(np.isfinite(hi), hi, 1.0)
    return _pad(lo, hi)


COLOR_LEVELS = 16  # a coloured scatter is drawn as this many one-colour layers (fast)


def color_levels(colors: Sequence[np.ndarray], k: int = COLOR_LEVELS):
    """A fixed, discrete colour scale for values over all frames: (boundaries (k + 1,),
    colormap name). A signed quantity gets levels symmetric about 0 up to the largest
    99.5 % quantile of |c| (coolwarm: blue < 0 < red); a non-negative one spans its
    0.5 %..99.5 % quantiles (viridis). Values outside fall in the end levels.

    Example:
        >>> bounds, cmap = color_levels([np.array([-2.0, 1.0])], k=4)
        >>> bounds.round(3).tolist(), cmap
        ([-1.995, -0.998, 0.0, 0.998, 1.995], 'coolwarm')
    """
    finite = [c[np.isfinite(c)] for c in colors]
    finite = [c for c in finite if c.size]
    if not finite:
        return np.linspace(-1.0, 1.0, k + 1), "coolwarm"
    if min(float(c.min()) for c in finite) < 0:
        top = max(float(np.quantile(np.abs(c), 0.995)) for c in finite) or 1.0
        return np.linspace(-top, top, k + 1), "coolwarm"
    lo = min(float(np.quantile(c, 0.005)) for c in finite)
    hi = max(float(np.quantile(c, 0.995)) for c in finite)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, k + 1), "viridis"


def symlog_threshold(
    points: Sequence[np.ndarray], lo: float, hi: float, j: int, ratio: float = 20.0
) -> float | None:
    """The linear range c of a symlog axis (linear on [-c, c], logarithmic beyond) when
    the fixed limits [lo, hi] of coordinate ``j`` reach more than ``ratio`` times c, c the
    largest over frames of the 90 % quantile of |z_j|; None: a linear axis.

    Heavy tails call for it: the breakpoints -b_j / w_j of units with w_j near 0 spread
    like a Cauchy law, so limits that keep 99 % of every frame's points span +-100 when
    most breakpoints lie in [-1, 1].

    Example:
        >>> z = np.concatenate([np.linspace(-1, 1, 95), [200.0] * 5])[:, None]
        >>> round(symlog_threshold([z], -200.0, 200.0, 0), 3)  # the 90 % quantile of |z|
        0.957
        >>> symlog_threshold([z[:95]], -1.0, 1.0, 0) is None
        True
    """
    core = 0.0
    for x in points:
        col = np.abs(x[:, j][np.isfinite(x[:, j])])
        if col.size:
            core = max(core, float(np.quantile(col, 0.9)))
    reach = max(abs(lo), abs(hi))
    if not core > 0 or reach <= ratio * core:
        return None
    return core


def _marker_size(n: int) -> float:
    return float(np.clip(300.0 / math.sqrt(max(n, 1)), 1.0, 16.0))


class _Panel(abc.ABC):
    """A view drawn on one axes: its animated artists, the per-frame update, and the
    handles it adds to the figure's legend."""

    artists: list
    handles: list
    note: str | None = None

    @abc.abstractmethod
    def update(self, i: int) -> None: ...


def _mark_points(ax, coords: np.ndarray, marks: TeacherMarks):
    """Teacher atoms at ``coords`` (k, 2): stars where both are finite (area ~ weight),
    dashed vertical lines where only x is, horizontal ones where only y is (width ~
    weight). Returns (artists, legend handles)."""
    artists, handles = [], []
    fx, fy = np.isfinite(coords[:, 0]), np.isfinite(coords[:, 1])
    both = fx & fy
    weights = np.asarray(marks.weights, np.float64)
    share = weights / (float(weights.max()) if weights.size and weights.max() > 0 else 1.0)
    if both.any():
        stars = ax.scatter(
            coords[both, 0],
            coords[both, 1],
            s=40.0 + 160.0 * share[both],
            marker="*",
            c="gold",
            edgecolors=COLORS["teacher"],
            linewidths=0.7,
            zorder=4,
            animated=True,
            label=marks.name + r" (size $\propto \alpha_i$)",
        )
        artists.append(stars)
        handles.append(stars)
    lines = []
    for i in np.flatnonzero(fx != fy):
        draw = ax.axvline if fx[i] else ax.axhline
        at = coords[i, 0] if fx[i] else coords[i, 1]
        lw = 0.6 + 1.4 * share[i]
        lines.append(draw(at, color=COLORS["teacher"], ls="--", lw=lw, zorder=4, animated=True))
    if lines:
        lines[0].set_label(marks.name + r" (width $\propto \alpha_i$)")
        artists += lines
        handles.append(lines[0])
    return artists, handles


class _ScatterPanel(_Panel):
    """Points on fixed limits. A coloured view is drawn as `COLOR_LEVELS` one-colour
    scatters (Agg draws a one-colour scatter as stamped markers, ~10x faster than a
    scatter with a colour per point); the colour bar shows those levels. Pale levels are
    drawn first, strong ones on top."""

    def __init__(self, fig, ax, view, frames, marks, color: str, particles_max: int):
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm
        from matplotlib.ticker import MaxNLocator

        pts, cols = [], []
        n_all = 0
        for arrays in frames:
            xy, c = view.coordinates(arrays)
            n_all = xy.shape[0]
            keep = _subset(n_all, particles_max)
            if keep is not None:
                xy, c = xy[keep], (None if c is None else c[keep])
            ok = np.all(np.isfinite(xy), axis=1)
            pts.append(xy[ok])
            cols.append(None if c is None else c[ok])
        if n_all > particles_max:
            self.note = f"{particles_max} of {n_all} particles drawn (a fixed random subset)"
        mark_xy = None if marks is None else view.coordinates(marks.arrays)[0]
        lo, hi = frame_limits(pts, mark_xy)
        labels = [view.xlabel, view.ylabel]
        for j, (set_scale, set_lim) in enumerate(
            ((ax.set_xscale, ax.set_xlim), (ax.set_yscale, ax.set_ylim))
        ):
            c = symlog_threshold(pts, lo[j], hi[j], j)
            if c is not None:
                set_scale("symlog", linthresh=c, linscale=2.0)
                labels[j] += f" (log beyond $\\pm${c:.2g})"
            set_lim(lo[j], hi[j])
        ax.set(xlabel=labels[0], ylabel=labels[1], title=view.title)
        kw = {
            "s": _marker_size(max(len(p) for p in pts)),
            "linewidths": 0,
            "zorder": 2,
            "marker": "8",  # an octagon: a polygon, its extent found 10x faster than a circle's
            "animated": True,
        }
        self.handles = []
        if view.clabel is not None and cols[0] is not None:
            bounds, name = color_levels(cols)
            norm = BoundaryNorm(bounds, 256)
            cmap = colormaps[name]
            k = len(bounds) - 1
            centres = 0.5 * (bounds[1:] + bounds[:-1])
            if name == "coolwarm":  # pale (near 0) first
                order = np.argsort(np.abs(centres), kind="stable")
            else:
                order = np.arange(k)
            # self.layers[i][level]: the points of frame i in that colour level
            self.layers = []
            for xy, c in zip(pts, cols, strict=True):
                level = np.clip(np.searchsorted(bounds, c, side="right") - 1, 0, k - 1)
                self.layers.append([xy[level == lv] for lv in order])
            self.scatters = [
                ax.scatter(*self.layers[0][j].T, color=cmap(norm(centres[lv])), **kw)
                for j, lv in enumerate(order)
            ]
            fig.colorbar(
                ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=view.clabel, pad=0.02,
                ticks=MaxNLocator(5),
            )  # fmt: skip
        else:
            self.layers = [[xy] for xy in pts]
            self.scatters = [ax.scatter(*pts[0].T, color=color, label="particles", **kw)]
            self.handles = [self.scatters[0]]
        self.artists = list(self.scatters)
        if marks is not None:
            drawn, handles = _mark_points(ax, mark_xy, marks)
            self.artists += drawn
            self.handles += handles

    def update(self, i: int) -> None:
        for sc, xy in zip(self.scatters, self.layers[i], strict=True):
            sc.set_offsets(xy)


class _HistogramPanel(_Panel):
    def __init__(self, fig, ax, view, frames, marks, color: str):
        values = [view.coordinates(arrays)[0] for arrays in frames]
        mark_v = None if marks is None else view.coordinates(marks.arrays)[0]
        lo, hi = frame_limits(
            [v[:, None] for v in values], None if mark_v is None else mark_v[:, None]
        )
        edges = np.linspace(lo[0], hi[0], BINS + 1)
        self.heights = [np.histogram(v[np.isfinite(v)], edges)[0] / max(v.size, 1) for v in values]
        top = max(float(h.max()) for h in self.heights) or 1.0
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0.0, 1.1 * top)
        ax.set(xlabel=view.xlabel, ylabel=view.ylabel, title=view.title)
        self.stairs = ax.stairs(
            self.heights[0], edges, fill=True, color=color, label="particles",
            animated=True,
        )  # fmt: skip
        self.artists, self.handles = [self.stairs], [self.stairs]
        if marks is not None:
            xy = np.stack([mark_v, np.full(mark_v.shape, np.nan)], axis=1)
            drawn, handles = _mark_points(ax, xy, marks)
            self.artists += drawn
            self.handles += handles

    def update(self, i: int) -> None:
        self.stairs.set_data(values=self.heights[i])


class _DensityPanel(_Panel):
    def __init__(self, fig, ax, view: DensityView, frames, marks, color: str):
        self.rho = [view.density(arrays) for arrays in frames]
        axes = view.centres(frames[0])
        low, high = np.atleast_1d(frames[0]["low"]), np.atleast_1d(frames[0]["high"])
        tops = [float(np.max(r, initial=0.0, where=np.isfinite(r))) for r in self.rho]
        top = max(tops) if max(tops) > 0 else 1.0
        atoms = None if marks is None else view.atoms(marks.arrays)
        ax.set_title(view.title)
        if len(axes) == 1:
            (self.line,) = ax.plot(
                axes[0], self.rho[0], color=color, animated=True, label=r"$\rho_t$"
            )
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(0.0, 1.05 * top)
            ax.set(xlabel=view.labels[0], ylabel=r"density $\rho_t$")
            self.artists, self.handles, self.image = [self.line], [self.line], None
            xy = None if atoms is None else np.stack([atoms[:, 0], np.full(len(atoms), np.nan)], 1)
        else:
            extent = (low[1], high[1], low[0], high[0])
            self.image = ax.imshow(
                self.rho[0], origin="lower", extent=extent, aspect="auto", cmap="magma",
                vmin=0.0, vmax=top, animated=True, interpolation="nearest",
            )  # fmt: skip
            fig.colorbar(self.image, ax=ax, label=r"density $\rho_t$", pad=0.02)
            ax.set(xlabel=view.labels[1], ylabel=view.labels[0])
            self.artists, self.handles = [self.image], []
            xy = None if atoms is None else atoms[:, ::-1]  # x: the second grid axis
        if xy is not None:
            drawn, handles = _mark_points(ax, xy, marks)
            self.artists += drawn
            self.handles += handles

    def update(self, i: int) -> None:
        if self.image is None:
            self.line.set_ydata(self.rho[i])
        else:
            self.image.set_data(self.rho[i])


def _panel(fig, ax, view: View, frames, marks, color: str, particles_max: int) -> _Panel:
    if isinstance(view, DensityView):
        return _DensityPanel(fig, ax, view, frames, marks, color)
    if view.dims == 1:
        return _HistogramPanel(fig, ax, view, frames, marks, color)
    return _ScatterPanel(fig, ax, view, frames, marks, color, particles_max)


# ------------------------------------------------------------------------ encoders


def ffmpeg_available() -> bool:
    """Whether matplotlib's FFMpegWriter finds an ``ffmpeg`` executable (MP4 output)."""
    from matplotlib.animation import FFMpegWriter

    return bool(FFMpegWriter.isAvailable())


def _check_args(max_frames, fps, fmt, particles_max) -> None:
    def count(name, value, least):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ConfigError(f"`{name}` must be an integer >= {least}; got {value!r}.")

    count("max_frames", max_frames, 2)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not fps >= 1:
        raise ConfigError(f"`fps` must be a number >= 1 (frames per second); got {fps!r}.")
    if fmt not in FORMATS:
        raise ConfigError(f"`fmt` must be one of {list(FORMATS)}; got {fmt!r}.")
    count("particles_max", particles_max, 1)


def _suffix(fmt: str) -> str:
    if fmt == "gif":
        return ".gif"
    if ffmpeg_available():
        return ".mp4"
    if fmt == "mp4":
        raise ConfigError(
            "`fmt` is 'mp4' but matplotlib's FFMpegWriter finds no `ffmpeg` executable on "
            "PATH; install it (`apt-get install ffmpeg`, or your system's package) or use "
            "`fmt='gif'` (written by Pillow, no ffmpeg needed)."
        )
    return ".gif"


def _even_indices(n: int, k: int) -> list[int]:
    """At most k indices of range(n), evenly spaced by index, first and last kept."""
    if n <= k:
        return list(range(n))
    return [int(i) for i in np.round(np.linspace(0, n - 1, k))]


def animate_run(
    run_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    max_frames: int = 100,
    fps: float = 10,
    fmt: str = "auto",
    particles_max: int = PARTICLES_MAX,
) -> Path | None:
    """Write an animation of the run's snapshots; return its path (None with < 2 snapshots).

    Args:
        run_dir: a run directory (`mfnn.rundir`).
        out: the output path without its extension (default ``RUN_DIR/report/particles``);
            a ``.gif`` or ``.mp4`` suffix given is replaced by the format's.
        max_frames: at most this many frames (>= 2): the snapshots evenly spaced by index,
            the first and the last kept.
        fps: frames per second (>= 1).
        fmt: "gif" (Pillow), "mp4" (matplotlib's FFMpegWriter: needs ``ffmpeg`` on PATH) or
            "auto" (mp4 when ffmpeg is there, else gif).
        particles_max: a panel with more particles draws a fixed random subset of this size.

    Raises:
        ConfigError: a bad argument (named, with the value), no ``config.yaml`` in
            ``run_dir``, or ``fmt="mp4"`` without ffmpeg.

    Example (a run with snapshots):
        >>> animate_run("runs/sign/mean_field")  # doctest: +SKIP
        PosixPath('runs/sign/mean_field/report/particles.gif')
    """
    _check_args(max_frames, fps, fmt, particles_max)
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)  # a ConfigError naming the folder without config.yaml
    snaps = list_snapshots(run_dir)
    if len(snaps) < 2:
        return None
    suffix = _suffix(fmt)
    steps = sorted(snaps)
    steps = [steps[i] for i in _even_indices(len(steps), max_frames)]
    frames = [_read(snaps[s]) for s in steps]
    try:
        sc = scene(run_dir, cfg, frames[-1])
    except KeyError as exc:
        raise ConfigError(
            f"the snapshot {str(snaps[steps[-1]])!r} has no array {exc}, which a "
            f"`model.kind: {cfg.model.kind}` run writes (it has {sorted(frames[-1])}); is it "
            "this run's snapshot?"
        ) from None
    stem = Path(out) if out is not None else run_dir / "report" / "particles"
    if stem.suffix in (".gif", ".mp4"):
        stem = stem.with_suffix("")
    path = stem.parent / (stem.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = [s * float(cfg.dynamics.dt) for s in steps]
    write_animation(sc, frames, times, path, fps=fps, particles_max=particles_max, steps=steps)
    return path


class Animation:
    """A scene drawn once for its frames; `render` gives frame i as an RGB array.

    The figure (one 5 x 4 inch panel per view at 80 dpi, the scene's title above, one
    legend below) is laid out and drawn once with every per-frame artist left out: that
    image is the background. Frame i restores it, updates the artists to snapshot i
    (scatter offsets, histogram heights, the density curve or image, the time) and draws
    only them (Agg blitting), so a frame costs the particles, not the axes and labels.

    Args:
        sc: the `Scene` (panels, teacher marks, title).
        frames: the snapshot arrays of each frame.
        times: the time of each frame.
        steps: the step of each frame, shown after its time (None: the time alone). Every
            frame's text then differs, so no two frames are identical: a GIF writer merges
            identical consecutive frames, and a frame per snapshot is the contract.
        particles_max: a scatter with more particles draws a fixed random subset.
    """

    def __init__(
        self,
        sc: Scene,
        frames: Sequence[Arrays],
        times: Sequence[float],
        particles_max: int = PARTICLES_MAX,
        steps: Sequence[int] | None = None,
    ):
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if len(frames) != len(times) or not frames:
            raise ValueError(f"{len(frames)} frames for {len(times)} times; give one each.")
        self.times = [float(t) for t in times]
        if steps is not None and len(steps) != len(times):
            raise ValueError(f"{len(steps)} steps for {len(times)} times; give one each.")
        self.labels = [
            f"t = {t:.4g}" + ("" if steps is None else f" (step {int(s)})")
            for t, s in zip(self.times, self.times if steps is None else steps, strict=True)
        ]
        n = len(sc.views)
        with matplotlib.rc_context({"font.size": 8, "axes.titlesize": 9}):
            fig = Figure(
                figsize=(min(PANEL_INCHES[0] * n, MAX_WIDTH_INCHES), PANEL_INCHES[1]),
                dpi=DPI,
                layout="constrained",
            )
            self.canvas = FigureCanvasAgg(fig)
            self.figure = fig
            self.axes = list(fig.subplots(1, n, squeeze=False)[0])
            self.panels = [
                _panel(fig, ax, view, frames, sc.marks, sc.color, particles_max)
                for ax, view in zip(self.axes, sc.views, strict=True)
            ]
            handles = {h.get_label(): h for p in self.panels for h in p.handles}
            if handles:
                fig.legend(
                    list(handles.values()), list(handles), loc="outside lower center",
                    ncols=len(handles), fontsize=7, frameon=False,
                )  # fmt: skip
            notes = sorted({p.note for p in self.panels if p.note})
            self.title = sc.title + ("\n" + "; ".join(notes) if notes else "")
            fig.suptitle(self.title, fontsize=9)
            # the time, in the first panel's corner: a short text to re-draw each frame
            self.clock = self.axes[0].text(
                0.02, 0.97, self.labels[-1], transform=self.axes[0].transAxes,
                ha="left", va="top", zorder=5, animated=True,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.85},
            )  # fmt: skip
            self.canvas.draw()
        fig.set_layout_engine("none")  # the layout of that draw, frozen
        self.background = self.canvas.copy_from_bbox(fig.bbox)
        self.artists = [a for p in self.panels for a in p.artists] + [self.clock]

    def __len__(self) -> int:
        return len(self.times)

    def render(self, i: int) -> np.ndarray:
        """Frame i as RGB (H, W, 3) uint8: the background, then the per-frame artists."""
        self.canvas.restore_region(self.background)
        self.clock.set_text(self.labels[i])
        for p in self.panels:
            p.update(i)
        for a in self.artists:
            self.figure.draw_artist(a)
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()


def write_animation(
    sc: Scene,
    frames: Sequence[Arrays],
    times: Sequence[float],
    path: str | os.PathLike,
    *,
    fps: float = 10,
    particles_max: int = PARTICLES_MAX,
    steps: Sequence[int] | None = None,
) -> Path:
    """Draw ``sc`` for each frame (snapshot arrays at ``times``, ``steps``: `Animation`)
    and encode it to ``path``, whose suffix picks the encoder (.gif: Pillow; .mp4:
    FFMpegWriter); the file is written atomically."""
    path = Path(path)
    anim = Animation(sc, frames, times, particles_max, steps)
    if path.suffix == ".mp4":
        _write_mp4(anim.render, len(anim), path, fps)
    else:
        _write_gif(anim.render, len(anim), path, fps)
    return path


def _write_gif(render, n: int, path: Path, fps: float) -> None:
    """Frames through one adaptive palette (from the first, middle and last frames), no
    dithering, Pillow's GIF writer with ``optimize``."""
    from PIL import Image

    probe = [render(i) for i in sorted({0, n // 2, n - 1})]
    palette = Image.fromarray(np.concatenate(probe, axis=0)).quantize(
        256, method=Image.Quantize.MEDIANCUT
    )
    images = [
        Image.fromarray(render(i)).quantize(palette=palette, dither=Image.Dither.NONE)
        for i in range(n)
    ]

    def write(fh):
        images[0].save(
            fh,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=1000.0 / fps,
            loop=0,
            optimize=True,
        )

    atomic_write(path, write)


def _write_mp4(render, n: int, path: Path, fps: float) -> None:
    """H.264 through matplotlib's FFMpegWriter. The writer grabs frames of a carrier
    figure of the same pixel size that holds the rendered frame as a `figimage` (one
    image copy per frame, not a re-draw of the plot); written to a temporary file renamed
    into place."""
    from matplotlib.animation import FFMpegWriter
    from matplotlib.figure import Figure

    first = render(0)
    height, width = first.shape[:2]
    carrier = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    image = carrier.figimage(first, origin="upper", resize=False)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    writer = FFMpegWriter(fps=fps, codec="h264")
    try:
        with writer.saving(carrier, str(tmp), DPI):
            for i in range(n):
                image.set_data(first if i == 0 else render(i))
                writer.grab_frame()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------- the PDE next to its particles


def density_vs_particles(
    grid,
    densities: Sequence[np.ndarray],
    particles: Sequence[np.ndarray],
    times: Sequence[float],
    path: str | os.PathLike,
    *,
    fps: float = 2,
    fmt: str = "auto",
    title: str = "the PDE's density and its particles",
    label: str = "particles",
) -> Path:
    r"""An animation of a grid density rho(t) (`mfnn.pde`) next to a particle cloud mu_m(t)
    of the same flow at the same times: the Lagrangian and the Eulerian view of one
    Wasserstein gradient flow, frame k at t = ``times[k]``.

    1-D grids: rho(t) as a curve and the particles as a histogram normalised to a
    density (int = 1) on bins of whole grid cells (about 2 sqrt(m) of them), on one axis
    with fixed limits (the largest density of all frames; the range holding all but 1e-4
    of every frame's mass and every particle). 2-D grids: two images side by side with one
    colour scale, rho(t) and the particles' 2-D histogram on the grid's cells divided by
    the cell area.

    Args:
        grid: the `mfnn.pde.grid.Grid` of the densities.
        densities: rho(t_k) per frame, each of shape ``grid.cells``.
        particles: the particles per frame, (m,) or (m, D) with D = ``grid.dim`` (for
            instance every replica of one width pooled).
        times: t_k per frame.
        path: the file; its suffix is set by the format (``.gif`` Pillow, ``.mp4`` ffmpeg).
        fps: frames per second; fmt: "auto" (MP4 when ffmpeg is on PATH), "gif", "mp4".
        title: the figure title; label: the legend name of the particles.

    Returns:
        The path written.

    Raises:
        ConfigError: frames of unequal number, fewer than 1 frame, a grid of dimension
            > 2, particles of another dimension, a bad ``fps`` or ``fmt``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_args(2, fps, fmt, PARTICLES_MAX)
    n = len(times)
    if n < 1 or len(densities) != n or len(particles) != n:
        raise ConfigError(
            "`densities`, `particles` and `times` must hold one entry per frame (>= 1); got "
            f"{len(densities)}, {len(particles)} and {n}."
        )
    dim = grid.dim
    if dim > 2:
        raise ConfigError(f"`grid` must be 1-D or 2-D to be drawn; got dimension {dim}.")
    pts = [np.asarray(p, float).reshape(len(p), -1) for p in particles]
    if any(p.shape[1] != dim for p in pts):
        raise ConfigError(
            f"`particles` must have {dim} column(s) like the grid; got "
            f"{sorted({p.shape[1] for p in pts})}."
        )
    rhos = [np.asarray(r, float).reshape(grid.cells) for r in densities]
    edges = [grid.edges(k) for k in range(dim)]
    if dim == 1:  # coarser bins for the particles: about 2 sqrt(m) over the grid's range
        m = min(len(p) for p in pts)
        stride = max(1, round(grid.cells[0] / max(2.0 * math.sqrt(m), 1.0)))
        bins = [edges[0][::stride] if (len(edges[0]) - 1) % stride == 0
                else np.r_[edges[0][::stride], edges[0][-1]]]  # fmt: skip
    else:
        bins = edges
    hists = [np.histogramdd(p, bins=bins, density=True)[0] for p in pts]
    top = max(float(np.nanmax(r)) for r in rhos + hists) * 1.08
    fig = Figure(figsize=(5.2 if dim == 1 else 9.0, 3.8), dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    pde_color, part_color = DYNAMICS_COLORS["pde"], COLORS["mean_field"]
    if dim == 1:
        ax = fig.add_subplot()
        x = grid.axis(0)
        # the x range that holds all but 1e-4 of every frame's mass, and every particle
        cdf = [np.cumsum(r) / max(r.sum(), 1e-300) for r in rhos]
        lo = min(x[np.searchsorted(c, 1e-4)] for c in cdf)
        hi = max(x[min(np.searchsorted(c, 1 - 1e-4), len(x) - 1)] for c in cdf)
        lo = min(lo, *(float(p.min()) for p in pts))
        hi = max(hi, *(float(p.max()) for p in pts))
        pad = 0.05 * (hi - lo)
        stairs = ax.stairs(hists[0], bins[0], fill=True, color=part_color, alpha=0.45,
                           label=f"{label} (histogram)")  # fmt: skip
        (line,) = ax.plot(x, rhos[0], color=pde_color, lw=2, label="PDE density rho(t)")
        ax.set(xlim=(max(lo - pad, edges[0][0]), min(hi + pad, edges[0][-1])), ylim=(0, top),
               xlabel=r"$\theta$", ylabel="density")  # fmt: skip
        ax.legend(fontsize=8, loc="upper right")
        stamp = ax.text(0.02, 0.96, "", transform=ax.transAxes, va="top", fontsize=9)

        def update(k: int) -> None:
            line.set_ydata(rhos[k])
            stairs.set_data(hists[k])
            stamp.set_text(f"t = {times[k]:g}")

    else:
        axes = fig.subplots(1, 2, sharey=True)
        extent = (edges[0][0], edges[0][-1], edges[1][0], edges[1][-1])
        ims = []
        for ax, data, name in zip(axes, (rhos[0], hists[0]), ("PDE density rho(t)", label),
                                  strict=True):  # fmt: skip
            ims.append(ax.imshow(data.T, origin="lower", extent=extent, vmin=0, vmax=top,
                                 aspect="auto", cmap="viridis"))  # fmt: skip
            ax.set(title=name, xlabel=r"$\theta_1$")
        axes[0].set_ylabel(r"$\theta_2$")
        fig.colorbar(ims[1], ax=axes, label="density")
        stamp = axes[0].text(0.02, 0.96, "", transform=axes[0].transAxes, va="top",
                             fontsize=9, color="w")  # fmt: skip

        def update(k: int) -> None:
            ims[0].set_data(rhos[k].T)
            ims[1].set_data(hists[k].T)
            stamp.set_text(f"t = {times[k]:g}")

    fig.suptitle(title, fontsize=10)

    def render(k: int) -> np.ndarray:
        update(k)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    out = Path(path).with_suffix(_suffix(fmt))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".mp4":
        _write_mp4(render, n, out, fps)
    else:
        _write_gif(render, n, out, fps)
    return out
