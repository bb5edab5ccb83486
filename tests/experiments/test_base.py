"""The helpers the experiments share (`mfnn.experiments.base`, `mfnn.plots.save_figure`):
known answers for the log-log fit, the parameter checks' messages, the Langevin checks."""

import doctest
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

import mfnn.experiments.base as base_module
from mfnn import ConfigError, config
from mfnn.experiments.base import (
    check_plain_langevin,
    integer_param,
    is_integer,
    is_number,
    loglog_fit,
    loglog_slope,
    number_param,
)
from mfnn.experiments.langevin_gibbs import LANGEVIN_GIBBS
from mfnn.plots import save_figure


def test_docstring_examples():
    result = doctest.testmod(base_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ log-log fit


@pytest.mark.parametrize("power", [-1.0, -0.5, 0.0, 1.7])
def test_a_power_law_gives_its_exponent_and_prefactor(power):
    x = np.array([10.0, 30.0, 100.0, 1000.0])
    slope, icpt = loglog_fit(x, 3.0 * x**power)
    assert slope == pytest.approx(power, abs=1e-12)
    assert math.exp(icpt) == pytest.approx(3.0, rel=1e-12)
    assert loglog_slope(list(x), list(3.0 * x**power)) == slope


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 4], [1.0, 0.0, 0.25]),  # a zero
        ([1, 2, 4], [1.0, -0.5, 0.25]),  # a negative value
        ([1, 2, 4], [1.0, math.nan, 0.25]),
        ([1, 2, 4], [1.0, math.inf, 0.25]),
        ([1], [1.0]),  # one point has no slope
    ],
)
def test_nan_unless_every_value_is_positive_and_finite(x, y):
    assert math.isnan(loglog_slope(x, y))
    assert all(math.isnan(v) for v in loglog_fit(x, y))


def test_least_squares_on_noisy_points_matches_polyfit():
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1e3, 7)
    y = x**-0.8 * np.exp(0.1 * rng.standard_normal(7))
    want = np.polyfit(np.log(x), np.log(y), 1)
    assert loglog_fit(x, y) == (float(want[0]), float(want[1]))


# ------------------------------------------------------------------ parameter checks


def test_predicates():
    assert is_number(1) and is_number(-2.5) and is_number(0)
    for v in (True, math.nan, math.inf, "1", None, [1]):
        assert not is_number(v)
    assert is_integer(0) and is_integer(-3)
    for v in (False, 1.0, "1", None):
        assert not is_integer(v)


@pytest.mark.parametrize(
    ("bounds", "good", "bad", "rule"),
    [
        ({}, -3.5, math.inf, "a finite number"),
        ({"above": 0}, 0.1, 0, "a number > 0"),
        ({"at_least": 0}, 0, -0.1, "a number >= 0"),
        ({"at_most": 2}, 2, 2.5, "a number <= 2"),
        ({"above": 0, "at_most": 1}, 1, 0, "a number in (0, 1]"),
        ({"above": 0, "below": 1}, 0.5, 1, "a number in (0, 1)"),
        ({"at_least": 0, "below": 0.5}, 0, 0.5, "a number in [0, 0.5)"),
        ({"at_least": 1}, True, True, "a number >= 1"),  # a bool is refused
    ],
)
def test_number_param_names_the_key_the_rule_and_the_value(bounds, good, bad, rule):
    if not isinstance(good, bool):
        assert number_param({"k": good}, "k", **bounds) == float(good)
        assert isinstance(number_param({"k": good}, "k", **bounds), float)
    with pytest.raises(ConfigError) as err:
        number_param({"k": bad}, "k", **bounds)
    assert str(err.value) == f"`experiment.params.k` must be {rule}; got {bad!r}."


def test_integer_param_names_the_key_and_the_value():
    assert integer_param({"n": 3}, "n") == 3
    assert integer_param({"n": 16}, "n", at_least=16) == 16
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ConfigError) as err:
            integer_param({"n": bad}, "n")
        assert str(err.value) == f"`experiment.params.n` must be an integer >= 1; got {bad!r}."
    with pytest.raises(ConfigError, match=r"^`experiment\.params\.gaussian\.dim` must be an "):
        integer_param({"dim": -1}, "dim", "experiment.params.gaussian")


# ------------------------------------------------------------------ Langevin checks


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("dynamics.integrator=euler", "dynamics.integrator"),
        ("dynamics.langevin.schedule=log", "dynamics.langevin.schedule"),
        ("dynamics.birth_death.rate=1.0", "dynamics.birth_death"),
        ("objective.l2=0", "objective.l2"),
        ("record.entropy_k=0", "record.entropy_k"),
    ],
)
def test_check_plain_langevin_names_the_field(override, field):
    cfg = config.load(LANGEVIN_GIBBS.default_config(), [])
    check_plain_langevin(cfg, "demo", schedule_reason="why", l2_reason="because")
    bad = config.load(LANGEVIN_GIBBS.default_config(), [override])
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        check_plain_langevin(bad, "demo", schedule_reason="why", l2_reason="because")
    assert "demo" in str(err.value)


# ------------------------------------------------------------------ figures


def test_save_figure_writes_creates_the_folder_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "figures" / "line.png")
    assert path == tmp_path / "figures" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
