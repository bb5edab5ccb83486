"""Animations of run directories (`mfnn.animate`): the views' coordinates against their
formulas, teacher marks, projection planes, fixed limits, the encoded files, bad input."""

import shutil

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageSequence

from mfnn import config, runs
from mfnn.animate import (
    Animation,
    Block,
    BreakpointView,
    DensityView,
    LinearView,
    _even_indices,
    _read,
    animate_run,
    ffmpeg_available,
    frame_limits,
    gram_schmidt,
    principal_plane,
    scene,
    symlog_threshold,
)
from mfnn.errors import ConfigError
from mfnn.rundir import list_snapshots, snapshot_path
from pde_configs import pde_1d

RELU_1D = {
    "model": {"width": 16, "activation": "relu", "bias": True},
    "data": {
        "target": "teacher",
        "teacher": {"w": [[1.0], [-1.0]], "b": [0.3, -0.2], "alpha": [0.6, 0.4]},
        "inputs": {"dim": 1},
        "n_train": 32,
        "n_test": 0,
    },
    "dynamics": {"dt": 0.05, "steps": 20},
    "record": {"every": 2, "snapshot_every": 2},
}
PLANE_2D = {
    "model": {"width": 16, "activation": "tanh", "bias": False},
    "data": {"target": "sign", "inputs": {"dim": 2}, "n_train": 32, "n_test": 0},
    "dynamics": {"dt": 0.1, "steps": 10},
    "record": {"every": 5, "snapshot_every": 5},
}
TEACHER_3D = [[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]
PROJ_3D = {
    "model": {"width": 16, "activation": "relu", "bias": True},
    "data": {
        "target": "teacher",
        "teacher": {"w": TEACHER_3D, "alpha": [0.5, 0.5]},
        "inputs": {"law": "gaussian", "dim": 3},
        "n_train": 32,
        "n_test": 0,
    },
    "dynamics": {"dt": 0.1, "steps": 10},
    "record": {"every": 5, "snapshot_every": 5},
}
WIDE = {
    "model": {
        "kind": "wide_resnet",
        "depth": 6,
        "width": 8,
        "activation": "tanh",
        "init": {"w": {"std": 0.5}},
    },
    "data": {
        "target": "teacher",
        "teacher": {"width": 2, "std": 1.0},
        "inputs": {"law": "gaussian", "dim": 2},
        "n_train": 32,
        "n_test": 0,
    },
    "dynamics": {"dt": 0.1, "steps": 10},
    "record": {"every": 5, "snapshot_every": 5},
}
PDE_1D = pde_1d(
    {"dynamics": {"steps": 40, "grid": {"cells": 60}}, "record": {"every": 20, "chunk": None}}
)
RUNS = {"relu_1d": RELU_1D, "plane_2d": PLANE_2D, "proj_3d": PROJ_3D, "wide": WIDE, "pde": PDE_1D}


class _Runs:
    """Tiny real runs, each made on first use (once per module and xdist worker)."""

    def __init__(self, root):
        self.root, self.made = root, {}

    def __getitem__(self, name):
        if name not in self.made:
            cfg = config.load(RUNS[name])
            out = self.root / name
            runs.execute(cfg, out, progress=False, make_figures=False, predictions=False)
            self.made[name] = out
        return self.made[name]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    return _Runs(tmp_path_factory.mktemp("animate"))


def frames_of(run_dir):
    snaps = list_snapshots(run_dir)
    return [_read(snaps[s]) for s in sorted(snaps)]


def synthetic_run(path, raw, snapshots):
    """A run directory by hand: ``config.yaml`` of a real config and snapshot files."""
    (path / "snapshots").mkdir(parents=True)
    (path / "config.yaml").write_text(config.dump(config.load(raw)))
    for step, arrays in snapshots.items():
        np.savez(snapshot_path(path, step), **arrays)
    return path


def gif_frames(path):
    with Image.open(path) as im:
        return im.n_frames, [f.info.get("duration") for f in ImageSequence.Iterator(im)]


# ---------------------------------------------------------------------------- views


def test_breakpoint_view_is_the_formula_and_marks_the_teacher_measure(run_dirs):
    sc = scene(run_dirs["relu_1d"])
    (view,) = sc.views
    assert isinstance(view, BreakpointView)
    last = frames_of(run_dirs["relu_1d"])[-1]
    a, w, b = last["a"], last["w"][:, 0], last["b"]
    xy, color = view.coordinates(last)
    np.testing.assert_allclose(xy[:, 0], -b / w, rtol=1e-14)
    np.testing.assert_allclose(xy[:, 1], np.abs(a * w), rtol=1e-14)
    np.testing.assert_array_equal(color, a)
    # rho* = 0.6 delta_(1, 1, 0.3) + 0.4 delta_(1, -1, -0.2): breakpoints -0.3 and -0.2,
    # slope changes |a w| = 1
    assert sc.marks is not None and sc.marks.exact
    np.testing.assert_allclose(view.coordinates(sc.marks.arrays)[0], [[-0.3, 1.0], [-0.2, 1.0]])
    np.testing.assert_allclose(sc.marks.weights, [0.6, 0.4])
    # a unit with w = 0 has no breakpoint: not drawn (NaN), not an infinity
    xy0, _ = view.coordinates({"a": np.ones(1), "w": np.zeros((1, 1)), "b": np.ones(1)})
    assert np.isnan(xy0[0, 0])


def test_d2_view_is_the_input_weights_coloured_by_a_and_a_sign_target_has_no_marks(run_dirs):
    sc = scene(run_dirs["plane_2d"])
    (view,) = sc.views
    assert isinstance(view, LinearView) and sc.marks is None
    last = frames_of(run_dirs["plane_2d"])[-1]
    xy, color = view.coordinates(last)
    np.testing.assert_array_equal(xy, last["w"])
    np.testing.assert_array_equal(color, last["a"])
    assert view.xlabel == r"$w_{j,1}$" and view.ylabel == r"$w_{j,2}$"


def test_d3_projection_plane_is_orthonormal_and_spans_the_teacher(run_dirs):
    sc = scene(run_dirs["proj_3d"])
    (view,) = sc.views
    basis = view.basis
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-14)
    w_star = np.asarray(TEACHER_3D)
    # the teacher's w* lie in the plane: projecting keeps their length
    np.testing.assert_allclose(
        np.linalg.norm(w_star @ basis.T, axis=1), np.linalg.norm(w_star, axis=1), rtol=1e-14
    )
    np.testing.assert_allclose(basis[0], w_star[0] / np.linalg.norm(w_star[0]), atol=1e-14)
    # the marks are the teacher atoms' projections, and every frame uses the same plane
    np.testing.assert_allclose(view.coordinates(sc.marks.arrays)[0], w_star @ basis.T)
    for arrays in frames_of(run_dirs["proj_3d"]):
        np.testing.assert_allclose(view.coordinates(arrays)[0], arrays["w"] @ basis.T)
    assert "e_1" in view.xlabel and "e_2" in view.ylabel


def test_d3_without_teacher_uses_the_principal_plane_of_the_last_snapshot(tmp_path):
    rng = np.random.default_rng(1)
    raw = {**PLANE_2D, "data": {**PLANE_2D["data"], "inputs": {"dim": 3}}}
    snaps = {s: {"a": rng.normal(size=30), "w": rng.normal(size=(30, 3))} for s in (0, 5)}
    run = synthetic_run(tmp_path / "r", raw, snaps)
    sc = scene(run)
    (view,) = sc.views
    np.testing.assert_allclose(view.basis, principal_plane(snaps[5]["w"]))
    np.testing.assert_allclose(view.coordinates(snaps[0])[0], snaps[0]["w"] @ view.basis.T)
    assert "principal" in view.xlabel and sc.marks is None


def test_principal_plane_finds_known_directions():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    # rows +-3 q1, +-2 q2, +-1 q3 (+ an offset): covariance eigenvectors q1, q2, q3
    rows = np.concatenate([s * q[:, i][None] * [[1.0], [-1.0]] for i, s in enumerate([3, 2, 1])])
    plane = principal_plane(rows + 5.0)
    np.testing.assert_allclose(np.abs(plane @ q[:, :2]), np.eye(2), atol=1e-12)
    # a line completes with a standard direction, orthonormal
    line = principal_plane(np.outer(np.arange(5.0), [1.0, 1.0, 0.0]))
    np.testing.assert_allclose(line @ line.T, np.eye(2), atol=1e-14)
    np.testing.assert_allclose(line[0], [2**-0.5, 2**-0.5, 0.0], atol=1e-14)


def test_gram_schmidt_skips_dependent_vectors_and_keeps_signs():
    e = gram_schmidt([np.array([0.0, 0.0, 0.0]), np.array([0.0, -3.0, 0.0]),
                      np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0])])  # fmt: skip
    np.testing.assert_allclose(e, [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-15)


def test_deep_model_panels_are_evenly_spaced_layers_on_fixed_principal_planes(run_dirs):
    sc = scene(run_dirs["wide"])
    assert [v.title.split(" (")[0] for v in sc.views] == [f"layer {i}" for i in (0, 2, 3, 5)]
    frames = frames_of(run_dirs["wide"])
    for view, layer in zip(sc.views, (0, 2, 3, 5), strict=True):
        assert view.blocks == (Block("layers", layer),)
        last_rows = frames[-1]["layers"][layer].reshape(8, 4)
        np.testing.assert_allclose(view.basis, principal_plane(last_rows))
        first_rows = frames[0]["layers"][layer].reshape(8, 4)
        np.testing.assert_allclose(view.coordinates(frames[0])[0], first_rows @ view.basis.T)
    assert sc.marks is None  # a deep teacher is drawn at random: not marked


def test_multilayer_panels_are_its_layers_and_a_histogram_of_a(tmp_path):
    rng = np.random.default_rng(2)
    raw = {
        "model": {"kind": "multilayer", "depth": 3, "width": 6, "activation": "tanh"},
        "data": {"target": "sign", "inputs": {"dim": 3}, "n_train": 8, "n_test": 0},
    }
    snaps = {
        s: {"w1": rng.normal(size=(6, 3)), "w2": rng.normal(size=(6, 6)),
            "w3": rng.normal(size=(6, 6)), "a": rng.normal(size=6)}
        for s in (0, 10, 20)
    }  # fmt: skip
    run = synthetic_run(tmp_path / "r", raw, snaps)
    sc = scene(run)
    assert len(sc.views) == 4 and sc.views[-1].title == "output weights"
    assert [v.blocks[0].key for v in sc.views] == ["w1", "w2", "w3", "a"]
    np.testing.assert_array_equal(sc.views[-1].coordinates(snaps[10])[0], snaps[10]["a"])
    np.testing.assert_allclose(sc.views[1].basis, principal_plane(snaps[20]["w2"]))
    anim = Animation(sc, list(snaps.values()), [0.0, 0.5, 1.0])
    assert anim.render(2).shape == (320, 1280, 3)
    assert "fraction" in anim.axes[-1].get_ylabel()


@pytest.mark.parametrize(
    ("model", "kind", "axes"),
    [
        ({"activation": "tanh", "bias": False, "train_output": False}, "hist", ("w",)),
        ({"activation": "tanh", "bias": False}, "scatter", ("w", "a")),
        ({"activation": "tanh", "bias": True}, "scatter", ("w", "b", "a")),
        ({"activation": "tanh", "bias": True, "trainable": ["a", "b"]}, "scatter", ("b", "a", "w")),
    ],
)
def test_one_dimensional_views_follow_the_moving_coordinates(tmp_path, model, kind, axes):
    rng = np.random.default_rng(3)
    raw = {
        "model": {"width": 10, **model},
        "data": {"target": "teacher", "teacher": {"w": [[1.0], [-2.0]], "activation": "tanh"},
                 "n_train": 8, "n_test": 0},
    }  # fmt: skip
    snaps = {s: {"a": rng.normal(size=10), "w": rng.normal(size=(10, 1)),
                 "b": rng.normal(size=10)} for s in (0, 1)}  # fmt: skip
    if not model.get("train_output", True):
        for arrays in snaps.values():
            arrays["a"] = np.ones(10)
    sc = scene(synthetic_run(tmp_path / "r", raw, snaps))
    (view,) = sc.views
    z, color = view.coordinates(snaps[1])
    col = {k: snaps[1][k].reshape(-1) for k in ("a", "w", "b")}
    if kind == "hist":
        assert z.ndim == 1 and color is None
        np.testing.assert_array_equal(z, col["w"])
        # the teacher measure rho* = (delta_1 + delta_-2) / 2 as values: vertical lines
        np.testing.assert_allclose(view.coordinates(sc.marks.arrays)[0], [1.0, -2.0])
    else:
        np.testing.assert_array_equal(z, np.stack([col[axes[0]], col[axes[1]]], axis=1))
        if len(axes) == 3:
            np.testing.assert_array_equal(color, col[axes[2]])
        else:
            assert color is None
    anim = Animation(sc, list(snaps.values()), [0.0, 0.05])
    assert anim.render(1).shape == (320, 400, 3)


def test_raw_teacher_neurons_are_marked_only_where_a_is_not_needed(tmp_path):
    """An ntk student: rho* is not a measure over its units, so the teacher's neurons mark
    their breakpoints -b*/w* as vertical lines (their slope change needs a, left out)."""
    raw = {**RELU_1D, "model": {**RELU_1D["model"], "scaling": "ntk"}}
    rng = np.random.default_rng(4)
    snaps = {s: {"a": rng.normal(size=16), "w": rng.normal(size=(16, 1)),
                 "b": rng.normal(size=16)} for s in (0, 2)}  # fmt: skip
    sc = scene(synthetic_run(tmp_path / "r", raw, snaps))
    assert sc.marks is not None and not sc.marks.exact
    xy = sc.views[0].coordinates(sc.marks.arrays)[0]
    np.testing.assert_allclose(xy[:, 0], [-0.3, -0.2])
    assert np.all(np.isnan(xy[:, 1]))
    anim = Animation(sc, list(snaps.values()), [0.0, 0.1])
    vertical = [ln.get_xdata() for ln in anim.axes[0].lines]
    np.testing.assert_allclose(sorted(float(x[0]) for x in vertical), [-0.3, -0.2])


# --------------------------------------------------------------------------- limits


def points_of(view, frames):
    return [view.coordinates(f)[0] for f in frames]


@pytest.mark.parametrize("name", ["relu_1d", "plane_2d", "proj_3d", "wide"])
def test_fixed_axis_limits_hold_99_percent_of_every_frame_and_axes_are_labelled(run_dirs, name):
    sc = scene(run_dirs[name])
    frames = frames_of(run_dirs[name])
    anim = Animation(sc, frames, [0.0] * len(frames))
    assert anim.figure.get_suptitle()
    colorbars = [ax for ax in anim.figure.axes if ax not in anim.axes]
    assert len(colorbars) == sum(v.clabel is not None for v in sc.views)
    for ax, view in zip(anim.axes, sc.views, strict=True):
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip() and ax.get_title()
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for z in points_of(view, frames):
            z = z[np.all(np.isfinite(z), axis=1)]
            inside = (z[:, 0] >= x0) & (z[:, 0] <= x1) & (z[:, 1] >= y0) & (z[:, 1] <= y1)
            assert inside.mean() >= 0.99
        if sc.marks is not None:  # the teacher atoms are inside too
            m = view.coordinates(sc.marks.arrays)[0]
            assert np.all((m[:, 0] >= x0) & (m[:, 0] <= x1) & (m[:, 1] >= y0) & (m[:, 1] <= y1))


def test_heavy_tailed_breakpoints_get_a_symlog_axis_that_keeps_99_percent(tmp_path):
    """At initialisation -b/w has Cauchy tails: limits holding 99 % of the points reach
    +-100, so the breakpoint axis is linear only on the bulk."""
    rng = np.random.default_rng(5)
    m = 10_000
    snaps = {}
    for i, s in enumerate((0, 10, 20)):
        shrink = 1.0 - 0.45 * i
        snaps[s] = {"a": rng.normal(size=m), "w": rng.normal(size=(m, 1)),
                    "b": shrink * rng.uniform(-1, 1, size=m)}  # fmt: skip
    sc = scene(synthetic_run(tmp_path / "r", RELU_1D, snaps))
    frames = list(snaps.values())
    anim = Animation(sc, frames, [0.0, 0.5, 1.0])
    ax = anim.axes[0]
    assert ax.get_xscale() == "symlog" and ax.get_yscale() == "linear"
    x0, x1 = ax.get_xlim()
    for z in points_of(sc.views[0], frames):
        assert np.mean((z[:, 0] >= x0) & (z[:, 0] <= x1)) >= 0.99
    assert "log beyond" in ax.get_xlabel()
    # the same frames without the tail: a linear axis
    assert symlog_threshold([np.clip(z, -3, 3) for z in points_of(sc.views[0], frames)],
                            -3.0, 3.0, 0) is None  # fmt: skip


def test_frame_limits_take_quantiles_per_frame_and_include_marks():
    rng = np.random.default_rng(6)
    wide = rng.standard_cauchy(size=(1000, 2))
    narrow = 0.01 * rng.normal(size=(1000, 2))
    lo, hi = frame_limits([narrow, wide], extra=np.array([[1e4, np.nan]]))
    for z in (narrow, wide):
        assert np.mean(np.all((z >= lo) & (z <= hi), axis=1)) >= 0.99
    assert hi[0] > 1e4 and hi[1] < 1e4  # the mark widens x only (its y is NaN)


# ------------------------------------------------------------------------------ files


def test_gif_has_one_frame_per_snapshot_up_to_max_frames(run_dirs, tmp_path):
    run = run_dirs["relu_1d"]
    path = animate_run(run, fmt="gif")
    assert path == run / "report" / "particles.gif" and path.stat().st_size > 0
    n, durations = gif_frames(path)
    assert n == len(list_snapshots(run)) == 11 and set(durations) == {100}
    short = animate_run(run, fmt="gif", max_frames=4, fps=5, out=tmp_path / "x.mp4")
    assert short == tmp_path / "x.gif"
    n, durations = gif_frames(short)
    assert n == 4 and set(durations) == {200}
    # evenly spaced by index, first and last kept
    assert _even_indices(11, 4) == [0, 3, 7, 10] and _even_indices(3, 4) == [0, 1, 2]


def test_pde_run_animates_its_density_on_fixed_limits(run_dirs):
    run = run_dirs["pde"]
    sc = scene(run)
    (view,) = sc.views
    assert isinstance(view, DensityView) and view.labels == ("$w$",)
    frames = frames_of(run)
    anim = Animation(sc, frames, [0.0, 0.08, 0.16])
    ax = anim.axes[0]
    top = max(float(f["density"].max()) for f in frames)
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= top
    assert ax.get_xlim() == (-4.0, 4.0)
    assert ax.get_xlabel() == "$w$" and "density" in ax.get_ylabel() and ax.get_title()
    # the teacher measure's atoms w* = 1.5, -0.5 as vertical lines
    lines = [ln.get_xdata()[0] for ln in ax.lines if len(ln.get_xdata()) == 2]
    np.testing.assert_allclose(sorted(lines), [-0.5, 1.5])
    anim.render(2)
    np.testing.assert_array_equal(anim.panels[0].line.get_ydata(), frames[2]["density"])
    assert gif_frames(animate_run(run, fmt="gif"))[0] == 3


def test_pde_2d_density_is_an_image_with_fixed_colour_limits(tmp_path):
    raw = {
        **PDE_1D,
        "model": {**PDE_1D["model"], "train_output": True},
        "dynamics": {**PDE_1D["dynamics"], "grid": {"cells": [8, 10]}},
    }
    rng = np.random.default_rng(7)
    snaps = {s: {"density": rng.uniform(size=(8, 10)) * (1 + s), "low": np.array([-4.0, -4.0]),
                 "high": np.array([4.0, 4.0]), "cells": np.array([8, 10]),
                 "t": np.asarray(s * 0.004)} for s in (0, 20)}  # fmt: skip
    sc = scene(synthetic_run(tmp_path / "r", raw, snaps))
    assert sc.views[0].labels == ("$a$", "$w$")
    anim = Animation(sc, list(snaps.values()), [0.0, 0.08])
    image = anim.panels[0].image
    assert image.get_clim() == (0.0, float(snaps[20]["density"].max()))
    anim.render(0)
    np.testing.assert_array_equal(image.get_array(), snaps[0]["density"])
    # the teacher atoms (a, w) = (1, 1.5), (1, -0.5): x is the second grid axis (w)
    stars = anim.axes[0].collections[-1].get_offsets()
    np.testing.assert_allclose(stars, [[1.5, 1.0], [-0.5, 1.0]])


def test_particles_above_the_limit_are_a_fixed_subset_said_in_the_title(run_dirs):
    run = run_dirs["plane_2d"]
    sc = scene(run)
    frames = frames_of(run)
    anim = Animation(sc, frames, [0.0, 0.5, 1.0], particles_max=6)
    assert "6 of 16 particles drawn" in anim.figure.get_suptitle()
    view = sc.views[0]
    keep = np.sort(np.random.default_rng(0).choice(16, size=6, replace=False))
    for i, f in enumerate(frames):
        anim.render(i)
        drawn = np.concatenate([sc_.get_offsets() for sc_ in anim.panels[0].scatters])
        want = view.coordinates(f)[0][keep]
        np.testing.assert_allclose(drawn[np.lexsort(drawn.T)], want[np.lexsort(want.T)], rtol=1e-15)


def test_fewer_than_two_snapshots_give_none(run_dirs, tmp_path):
    run = tmp_path / "r"
    (run / "snapshots").mkdir(parents=True)
    shutil.copy(run_dirs["relu_1d"] / "config.yaml", run / "config.yaml")
    assert animate_run(run) is None
    shutil.copy(list_snapshots(run_dirs["relu_1d"])[0], run / "snapshots")
    assert animate_run(run) is None and not (run / "report").exists()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_frames": 1}, "max_frames"),
        ({"max_frames": 2.5}, "max_frames"),
        ({"fps": 0}, "fps"),
        ({"fps": True}, "fps"),
        ({"fmt": "avi"}, "fmt"),
        ({"particles_max": 0}, "particles_max"),
    ],
)
def test_bad_arguments_are_refused_naming_them(run_dirs, kwargs, name):
    with pytest.raises(ConfigError, match=f"`{name}`") as err:
        animate_run(run_dirs["relu_1d"], **kwargs)
    assert repr(kwargs[name]) in str(err.value)


def test_a_snapshot_of_another_model_is_refused_naming_the_array(tmp_path):
    snaps = {s: {"layers": np.zeros((2, 3, 1, 1))} for s in (0, 1)}
    run = synthetic_run(tmp_path / "r", RELU_1D, snaps)
    with pytest.raises(ConfigError, match="no array 'w'"):
        animate_run(run)


def test_a_folder_without_config_is_refused_by_path(tmp_path):
    with pytest.raises(ConfigError, match="no config.yaml") as err:
        animate_run(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_mp4_without_ffmpeg_says_how_to_get_it_and_auto_falls_back_to_gif(
    run_dirs, tmp_path, monkeypatch
):
    monkeypatch.setitem(matplotlib.rcParams, "animation.ffmpeg_path", str(tmp_path / "none"))
    assert not ffmpeg_available()
    with pytest.raises(ConfigError, match="apt-get install ffmpeg"):
        animate_run(run_dirs["relu_1d"], fmt="mp4", out=tmp_path / "a")
    assert animate_run(run_dirs["relu_1d"], out=tmp_path / "a").suffix == ".gif"


@pytest.mark.skipif(not ffmpeg_available(), reason="no ffmpeg on PATH")
def test_mp4_with_ffmpeg(run_dirs, tmp_path):
    path = animate_run(run_dirs["relu_1d"], fmt="mp4", out=tmp_path / "a")
    assert path == tmp_path / "a.mp4" and path.stat().st_size > 0
    assert animate_run(run_dirs["relu_1d"], out=tmp_path / "b").suffix == ".mp4"


def test_a_run_at_rest_keeps_one_frame_per_snapshot(tmp_path):
    """Identical snapshots at times equal to 4 digits (t = 5e+04) still make distinct
    frames, the step shown with the time: a GIF writer merges identical frames."""
    arrays = {"a": np.ones(4), "w": np.ones((4, 1)), "b": np.zeros(4)}
    run = synthetic_run(tmp_path / "r", RELU_1D, {s: arrays for s in range(10**6, 10**6 + 50)})
    path = animate_run(run, fmt="gif", max_frames=50)
    assert gif_frames(path)[0] == 50


def test_density_next_to_its_particles(tmp_path):
    """The PDE density and a particle histogram, frame by frame, 1-D and 2-D; the inputs
    are checked."""
    from mfnn.animate import density_vs_particles
    from mfnn.pde.grid import Grid

    rng = np.random.default_rng(0)
    grid = Grid([-4.0], [4.0], [80])
    x = np.asarray(grid.axis(0))
    times = [0.0, 0.5, 1.0]
    rhos = [np.exp(-((x - t) ** 2) / 2) / np.sqrt(2 * np.pi) for t in times]
    parts = [rng.normal(t, 1.0, size=(500, 1)) for t in times]
    out = density_vs_particles(grid, rhos, parts, times, tmp_path / "d1", fmt="gif")
    assert out.suffix == ".gif" and Image.open(out).n_frames == 3
    grid2 = Grid([-3.0, -3.0], [3.0, 3.0], [24, 24])
    c = np.asarray(grid2.centers())
    rho2 = np.exp(-np.sum(c**2, axis=1) / 2).reshape(24, 24) / (2 * np.pi)
    out2 = density_vs_particles(
        grid2,
        [rho2, rho2],
        [rng.normal(size=(400, 2))] * 2,
        [0.0, 1.0],
        tmp_path / "d2",
        fmt="gif",
    )
    assert Image.open(out2).n_frames == 2
    with pytest.raises(ConfigError, match="one entry per frame"):
        density_vs_particles(grid, rhos, parts[:2], times, tmp_path / "x", fmt="gif")
    with pytest.raises(ConfigError, match="1 column"):
        density_vs_particles(grid, rhos[:1], [np.zeros((5, 2))], [0.0], tmp_path / "x")
