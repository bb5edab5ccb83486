"""The figure audit (`mfnn.style.audit_figure`) and its strict mode in `save_figure`.

A labelled, titled figure passes; each missing x label, y label, histogram count label and
title is reported on its own (negative controls); colorbar, hidden and empty axes are
exempt; a shared axis may carry its label on one panel; ``MFNN_FIGURE_AUDIT=strict`` makes
`save_figure` refuse a failing figure (nothing written), unset or ``off`` lets it through.
"""

import numpy as np
import pytest

from mfnn.errors import ConfigError
from mfnn.plots import plt, save_figure
from mfnn.style import audit_figure


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _good():
    fig, ax = plt.subplots()
    ax.plot([0.0, 1.0, 2.0], [1.0, 0.5, 0.25])
    ax.set(xlabel="t", ylabel="risk R", title="the risk decays")
    return fig, ax


def test_a_labelled_titled_figure_passes():
    fig, _ = _good()
    assert audit_figure(fig) == []


def test_a_suptitle_alone_is_a_title():
    fig, ax = _good()
    ax.set_title("")
    fig.suptitle("the risk decays")
    assert audit_figure(fig) == []


@pytest.mark.parametrize(
    ("unset", "expected"),
    [
        ({"xlabel": ""}, ["axes 0 ('the risk decays'): no x label"]),
        ({"ylabel": ""}, ["axes 0 ('the risk decays'): no y label"]),
        ({"ylabel": "   "}, ["axes 0 ('the risk decays'): no y label"]),
        ({"title": ""}, ["the figure has no title (no suptitle, no axes title)"]),
    ],
)
def test_each_missing_label_or_title_is_reported(unset, expected):
    fig, ax = _good()
    ax.set(**unset)
    assert audit_figure(fig) == expected


@pytest.mark.parametrize(
    "draw",
    [
        lambda ax: ax.scatter([0, 1], [1, 0]),  # a collection
        lambda ax: ax.imshow(np.eye(3)),  # an image: both axes
        lambda ax: ax.axvspan(0.0, 1.0),  # a patch
        lambda ax: ax.fill_between([0, 1], [0, 1]),
    ],
)
def test_every_kind_of_data_needs_both_labels(draw):
    fig, ax = plt.subplots()
    draw(ax)
    fig.suptitle("a claim")
    assert audit_figure(fig) == ["axes 0: no x label", "axes 0: no y label"]


def test_colorbar_hidden_and_empty_axes_are_exempt():
    fig, ax = plt.subplots(1, 4)
    im = ax[0].imshow(np.eye(3))
    ax[0].set(xlabel="w_1", ylabel="w_2", title="density")
    cb = fig.colorbar(im, ax=ax[0])  # made by fig.colorbar(ax=...)
    assert cb.ax.get_ylabel() == ""
    mesh = ax[1].pcolormesh(np.eye(3))
    ax[1].set(xlabel="x", ylabel="y")
    fig.colorbar(mesh, cax=ax[2])  # a colorbar on an axes of our own
    ax[3].plot([0, 1], [0, 1])
    ax[3].axis("off")
    fig.add_subplot(3, 3, 5)  # empty: a legend or text panel
    assert audit_figure(fig) == []
    # the control: the same image without labels is reported, the colorbar still is not
    ax[0].set(xlabel="", ylabel="")
    assert audit_figure(fig) == ["axes 0 ('density'): no x label", "axes 0 ('density'): no y label"]


def test_a_shared_axis_carries_its_label_once():
    fig, ax = plt.subplots(2, 2, sharex=True, sharey=True)
    for a in ax.flat:
        a.plot([0, 1], [1, 0])
    ax[1, 0].set_xlabel("t")
    ax[1, 1].set_xlabel("t")
    ax[0, 0].set_ylabel("risk R")
    ax[1, 0].set_ylabel("risk R")
    fig.suptitle("the risk decays")
    assert audit_figure(fig) == []
    # a twin axis shares x with its parent, but names its own y
    twin = ax[0, 0].twinx()
    twin.plot([0, 1], [0, 1])
    assert audit_figure(fig) == ["axes 4: no y label"]


def test_supxlabel_and_supylabel_label_every_panel():
    fig, ax = plt.subplots(1, 2)
    for a in ax:
        a.plot([0, 1], [1, 0])
    fig.suptitle("a claim")
    assert len(audit_figure(fig)) == 4
    fig.supxlabel("t")
    fig.supylabel("risk R")
    assert audit_figure(fig) == []


@pytest.mark.parametrize(
    ("kwargs", "axis"),
    [
        ({}, "y"),
        ({"histtype": "step"}, "y"),
        ({"histtype": "stepfilled"}, "y"),
        ({"orientation": "horizontal"}, "x"),
        ({"orientation": "horizontal", "histtype": "step"}, "x"),
    ],
)
def test_a_histogram_names_counts_or_density(kwargs, axis):
    values = np.random.default_rng(0).standard_normal(200)
    fig, ax = plt.subplots()
    ax.hist(values, 20, **kwargs)
    value_axis = "y" if axis == "x" else "x"
    ax.set(**{f"{value_axis}label": "breakpoint -b/w", f"{axis}label": "neurons"})
    ax.set_title("where the features are")
    assert audit_figure(fig) == [
        f"axes 0 ('where the features are'): a histogram whose {axis} label 'neurons' does "
        "not say count or density"
    ]
    for label in ("count of neurons", "density", "Number of particles", "# neurons"):
        ax.set(**{f"{axis}label": label})
        assert audit_figure(fig) == [], label


@pytest.mark.parametrize("orientation", ["vertical", "horizontal"])
@pytest.mark.parametrize("histtype", ["bar", "step", "stepfilled"])
def test_the_count_axis_of_a_histogram_with_empty_bins(orientation, histtype):
    fig, ax = plt.subplots()
    ax.hist([2.5, 2.6, 3.5], bins=[0, 1, 2, 3, 4, 5], orientation=orientation, histtype=histtype)
    count, value = ("y", "x") if orientation == "vertical" else ("x", "y")
    ax.set(**{f"{count}label": "density", f"{value}label": "w"}, title="a claim")
    assert audit_figure(fig) == []


def test_bars_that_do_not_touch_are_not_a_histogram():
    fig, ax = plt.subplots()
    ax.bar([0, 1, 2], [3.0, 1.0, 2.0], width=0.6)
    ax.set(xlabel="scaling", ylabel="slope", title="slopes per scaling")
    assert audit_figure(fig) == []


def test_subfigure_axes_and_titles_are_audited():
    fig = plt.figure()
    left, right = fig.subfigures(1, 2)
    ax = left.subplots()
    ax.plot([0, 1], [1, 0])
    assert audit_figure(fig) == [
        "axes 0: no x label",
        "axes 0: no y label",
        "the figure has no title (no suptitle, no axes title)",
    ]
    ax.set(xlabel="t", ylabel="risk R")
    right.suptitle("the risk decays")
    assert audit_figure(fig) == []


def test_strict_save_refuses_a_failing_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("MFNN_FIGURE_AUDIT", "strict")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    ax.set_ylabel("risk R")
    path = tmp_path / "figures" / "bad.png"
    with pytest.raises(ValueError, match=r"bad\.png.*no x label.*no title") as err:
        save_figure(fig, path)
    assert "MFNN_FIGURE_AUDIT=strict" in str(err.value)
    assert not path.exists()
    assert not plt.fignum_exists(fig.number)  # closed all the same
    good, _ = _good()
    assert save_figure(good, tmp_path / "good.png").exists()


@pytest.mark.parametrize("value", [None, "off", "OFF", ""])
def test_default_save_does_not_audit(tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("MFNN_FIGURE_AUDIT", raising=False)
    else:
        monkeypatch.setenv("MFNN_FIGURE_AUDIT", value)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])  # no labels, no title
    assert save_figure(fig, tmp_path / "a.png").exists()


def test_an_unknown_audit_value_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MFNN_FIGURE_AUDIT", "on")
    fig, _ = _good()
    with pytest.raises(ConfigError, match=r"`MFNN_FIGURE_AUDIT` must be strict or off.*'on'"):
        save_figure(fig, tmp_path / "a.png")
