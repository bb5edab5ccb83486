r"""Animation of the W2 geodesic between two particle clouds (docs/theory.md section 14).

``geodesic_animation(x, y, path)`` draws McCann's displacement interpolation

    mu_s = ((1 - s) Id + s T) # mu,   s in [0, 1],

T the optimal assignment map from ``mfnn.diagnostics.transport.optimal_map`` (McCann 1997:
the constant-speed geodesic of W2), frame by frame. It writes a GIF with
matplotlib's ``FuncAnimation`` and the Pillow writer (Pillow is a matplotlib dependency);
where that writer is missing it writes a PNG strip of the frames instead.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402

from .diagnostics.transport import (  # noqa: E402
    _cloud,
    _same_dimension,
    displacement_interpolation,
    optimal_map,
)
from .errors import ConfigError  # noqa: E402
from .plots import check_figure  # noqa: E402
from .style import COLORS  # noqa: E402

__all__ = ["geodesic_animation"]

# the source cloud is the initial state (grey, `mfnn.style.COLORS`); target and moving cloud
_SOURCE, _TARGET, _MOVING = COLORS["init"], "#c0392b", "#2471a3"


def _plane(points: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """(k, n, D) -> (k, n, 2): the first two coordinates; in D = 1 the source rank / n."""
    if points.shape[-1] >= 2:
        return points[..., :2]
    level = np.broadcast_to(ranks, points.shape[:-1])
    return np.stack([points[..., 0], level], axis=-1)


def geodesic_animation(
    x,
    y,
    path,
    frames: int = 30,
    *,
    fps: int = 10,
    permutation=None,
    title: str | None = None,
) -> Path:
    r"""Write an animation of the W2 geodesic mu_s = ((1 - s) Id + s T) # mu, s in [0, 1].

    Frame k shows the points (1 - s) x_i + s y_sigma(i) at s = k / (frames - 1), over the
    source cloud x (grey) and the target cloud y (red). Every particle moves on a straight
    line at constant speed |y_sigma(i) - x_i|, and W2(mu_0, mu_s) = s W2(mu_0, mu_1). For
    D > 2 only the first two coordinates are drawn (the title says so); in D = 1 the
    vertical axis is the rank of the source point divided by n, so the monotone
    rearrangement shows as non-crossing paths.

    Args:
        x: (n, D) source cloud (uniform weights).
        y: (n, D) target cloud, the same n and D.
        path: output file. With the Pillow writer available (matplotlib's default
            install) a GIF is written there (the suffix is set to ``.gif``); otherwise a
            PNG strip of the frames (suffix ``.png``).
        frames: number of frames, >= 2 (s = 0 and s = 1 included).
        fps: frames per second of the GIF.
        permutation: ``optimal_map(x, y)`` if already computed.
        title: figure title; a default states the claim (straight lines at constant
            speed), W2 and the projection.

    Returns:
        The path written (``.gif`` or ``.png``).

    Raises:
        ConfigError: as ``optimal_map``; ``frames`` < 2 or ``fps`` < 1.
        ValueError: ``MFNN_FIGURE_AUDIT=strict`` and the figure fails the audit
            (`mfnn.plots.check_figure`: only a blank ``title`` can make it fail).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> x = np.random.default_rng(0).standard_normal((40, 2))
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "geodesic"
        >>> geodesic_animation(x, x[::-1] * 0.5 + 3.0, out, frames=4).suffix
        '.gif'
    """
    for name, value, low in (("frames", frames, 2), ("fps", fps, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ConfigError(f"`{name}` must be an integer >= {low}; got {value!r}.")
    x = _cloud("x", x).astype(np.float64)
    y = _cloud("y", y).astype(np.float64)
    _same_dimension(x, y)
    sigma = optimal_map(x, y) if permutation is None else np.asarray(permutation)
    times = np.linspace(0.0, 1.0, int(frames))
    clouds = displacement_interpolation(x, y, times, permutation=sigma)  # (k, n, D)
    n, d = x.shape
    w2 = float(np.sqrt(np.mean(np.sum((y[sigma] - x) ** 2, axis=1))))
    ranks = (np.argsort(np.argsort(x[:, 0])) + 0.5) / n
    planar = _plane(clouds, ranks)
    source = planar[0]
    target = _plane(y[sigma][None], ranks)[0]
    if title is None:
        shown = "" if d == 2 else (" (first two coordinates)" if d > 2 else " (rank vs x)")
        title = (
            "W2 geodesic: each particle moves straight at constant speed\n"
            f"n = {n}, D = {d}, W2 = {w2:.3g}{shown}"
        )
    lo = planar.reshape(-1, 2).min(axis=0)
    hi = planar.reshape(-1, 2).max(axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-12)
    size = max(4.0, 200.0 / np.sqrt(n))

    def draw(ax):
        ax.scatter(*source.T, s=size, color=_SOURCE, alpha=0.35, lw=0, label="mu_0 (x)")
        ax.scatter(*target.T, s=size, color=_TARGET, alpha=0.35, lw=0, label="mu_1 (y)")
        ax.set(xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]))
        ax.set_xlabel("coordinate x1")
        ax.set_ylabel("coordinate x2" if d >= 2 else "rank of the source point / n")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if animation.writers.is_available("pillow"):
        out = path.with_suffix(".gif")
        fig, ax = plt.subplots(figsize=(5, 5))
        draw(ax)
        moving = ax.scatter(*planar[0].T, s=size, color=_MOVING, lw=0, label="mu_s")
        ax.legend(loc="upper left", fontsize=8)
        fig.suptitle(title, fontsize=9)
        label = ax.set_title("")
        check_figure(fig, out)

        def update(k):
            moving.set_offsets(planar[k])
            label.set_text(f"s = {times[k]:.2f},  W2(mu_0, mu_s) = {times[k] * w2:.3g}")
            return moving, label

        anim = animation.FuncAnimation(fig, update, frames=len(times), blit=False)
        anim.save(out, writer=animation.PillowWriter(fps=int(fps)), dpi=80)
        plt.close(fig)
        return out
    # No Pillow writer: a strip of at most 8 frames, one PNG.
    out = path.with_suffix(".png")
    shown = np.unique(np.linspace(0, len(times) - 1, min(len(times), 8)).round().astype(int))
    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.8), squeeze=False)
    for ax, k in zip(axes[0], shown, strict=True):
        draw(ax)
        ax.scatter(*planar[k].T, s=size, color=_MOVING, lw=0)
        ax.set_title(f"s = {times[k]:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    check_figure(fig, out)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
