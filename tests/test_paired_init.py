"""`model.init.paired`: m/2 draws and their mirrors (-a, w, b), so that f_0 = 0 exactly."""

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import config
from mfnn.build import build
from mfnn.errors import ConfigError

BASE = {"model": {"width": 16, "activation": "relu", "init": {"paired": True}},
        "data": {"n_train": 8, "n_test": 8}, "dynamics": {"steps": 4}}  # fmt: skip


@pytest.mark.parametrize("scaling", ["mean_field", "ntk"])
def test_paired_start_has_zero_output_and_mirrored_units(scaling):
    built = build(config.load(config.merge(BASE, {"model": {"scaling": scaling}})))
    theta = np.asarray(built.theta0)
    half = theta[:8]
    np.testing.assert_array_equal(theta[8:, 0], -half[:, 0])  # a -> -a
    np.testing.assert_array_equal(theta[8:, 1:], half[:, 1:])  # the same (w, b)
    f0 = built.model.predict(built.theta0, built.train.x)
    assert float(jnp.max(jnp.abs(f0))) < 1e-15
    unpaired = build(config.load(config.merge(BASE, {"model": {"init": {"paired": False}}})))
    assert float(jnp.max(jnp.abs(unpaired.model.predict(unpaired.theta0, built.train.x)))) > 1e-3


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model": {"width": 15}}, "even `model.width`"),
        ({"model": {"train_output": False}}, "train_output: false"),
        ({"model": {"kind": "multilayer", "depth": 2, "bias": False}}, "kind: multilayer"),
    ],
)
def test_paired_needs_output_weights_and_an_even_width(change, match):
    with pytest.raises(ConfigError, match=match):
        config.load(config.merge(BASE, change))
