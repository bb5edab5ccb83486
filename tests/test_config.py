"""Config validation: each bad input fails before compute with a one-paragraph message."""

import numpy as np
import pytest

from mfnn import config
from mfnn.build import build
from mfnn.errors import ConfigError


def load(*overrides, raw=None):
    return config.load(raw or {}, list(overrides))


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("model.widht=3", ["Unknown key `model.widht`", "Did you mean `model.width`"]),
        ("dynamic.dt=0.1", ["Unknown key `dynamic`", "Did you mean `dynamics`"]),
        ("model.width=-3", ["`model.width`", "greater than 0", "-3"]),
        ("dynamics.dt=0", ["`dynamics.dt`", "greater than 0", "got 0"]),
        ("dynamics.dt=-0.5", ["`dynamics.dt`", "-0.5"]),
        (
            "model.activation=rleu",
            ["`model.activation`", "'rleu'", "relu", "softplus", "quadratic"],
        ),
        ("model.scaling=lazy", ["`model.scaling`", "mean_field", "ntk", "'lazy'"]),
        ("dynamics.kind=sgd", ["`dynamics.batch_size`"]),
        ("model.gamma=0.3", ["`model.gamma`", "0.3"]),
        ("record.every=0", ["`record.every`"]),
        ("dtype=float16", ["`dtype`", "float32", "float64"]),
    ],
)
def test_bad_values_name_field_rule_and_value(override, needles):
    with pytest.raises(ConfigError) as info:
        load(override)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert "\n" not in msg  # one paragraph


def test_general_scaling_needs_gamma():
    with pytest.raises(ConfigError, match="needs `model.gamma`"):
        load("model.scaling=general")
    assert load("model.scaling=general", "model.gamma=0.75").model.gamma == 0.75


def test_overrides_parse_yaml_values():
    cfg = load("model.width=64", "model.bias=false", "model.trainable=[a]", "dynamics.dt=1e-3")
    assert cfg.model.width == 64 and cfg.model.bias is False
    assert cfg.model.trainable == ["a"] and cfg.dynamics.dt == 1e-3
    with pytest.raises(ConfigError, match="key=value"):
        load("model.width")


def test_dump_roundtrip_fills_every_default():
    cfg = load("model.width=32")
    again = config.load(__import__("yaml").safe_load(config.dump(cfg)))
    assert again == cfg


def test_missing_particle_file(tmp_path):
    cfg = load(f"model.init.path={tmp_path / 'nope.npz'}")
    with pytest.raises(ConfigError, match="`model.init.path`.*does not exist"):
        build(cfg)


def test_particle_file_wrong_shapes(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, a=np.ones(5), w=np.ones((5, 3)), b=np.zeros(5))  # d = 3, data d = 1
    with pytest.raises(ConfigError, match=r"`w`.*shape \(m, 1\).*\(5, 3\)"):
        build(load(f"model.init.path={p}"))
    np.savez(p, a=np.ones(4), w=np.ones((5, 1)), b=np.zeros(5))
    with pytest.raises(ConfigError, match=r"`a`.*\(5,\).*\(4,\)"):
        build(load(f"model.init.path={p}"))
    np.savez(p, a=np.ones(5), w=np.ones((5, 1)))
    with pytest.raises(ConfigError, match="no `b`"):
        build(load(f"model.init.path={p}"))


def test_width_inferred_from_particle_file_and_conflict(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, a=np.ones(7), w=np.ones((7, 1)), b=np.zeros(7))
    built = build(load(f"model.init.path={p}", raw={"model": {"width": None}}))
    assert built.theta0.shape == (7, 3)
    assert build(load(f"model.init.path={p}")).theta0.shape[0] == 7  # default width ignored
    with pytest.raises(ConfigError, match="`model.width` is 512 but the particle file"):
        build(load(f"model.init.path={p}", "model.width=512"))


def test_data_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="`data.path`.*does not exist"):
        build(load(f"data.path={tmp_path / 'd.npz'}"))
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((10, 2)), y=np.ones(9))
    with pytest.raises(ConfigError, match=r"`x` must be \(n, d\) and `y` \(n,\)"):
        build(load(f"data.path={p}"))
    np.savez(p, x=np.ones((10, 2)))
    with pytest.raises(ConfigError, match=r"lacks \['y'\]"):
        build(load(f"data.path={p}"))


def test_data_file_sets_input_dimension(tmp_path):
    p = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(p, x=rng.normal(size=(30, 4)), y=rng.normal(size=30))
    built = build(load(f"data.path={p}", "model.width=8"))
    assert built.model.d == 4 and built.theta0.shape == (8, 6) and built.test is None


def test_teacher_validation():
    base = {"data": {"target": "teacher", "inputs": {"dim": 2}}}
    with pytest.raises(ConfigError, match="needs `data.teacher`"):
        load(raw=base)
    bad = {"data": {**base["data"], "teacher": {"w": [[1, 0], [0, 1]], "alpha": [0.7, 0.7]}}}
    with pytest.raises(ConfigError, match="summing to 1"):
        build(load(raw=bad))
    bad = {"data": {**base["data"], "teacher": {"w": [[1, 0, 0]]}}}
    with pytest.raises(ConfigError, match="dimension 3 but `data.inputs.dim` is 2"):
        build(load(raw=bad))
    ok = {"data": {**base["data"], "teacher": {"w": [[1, 0], [0, 1]], "alpha": [0.6, 0.4]}}}
    built = build(load("model.width=4", raw=ok))
    x = built.train.x
    expected = 0.6 * np.maximum(x[:, 0], 0) + 0.4 * np.maximum(x[:, 1], 0)
    np.testing.assert_allclose(built.train.y, expected, rtol=1e-12)


def test_trainable_block_must_exist():
    with pytest.raises(ConfigError, match="no `b` block"):
        build(load("model.bias=false", "model.trainable=[a, b]"))


def test_same_seed_same_particles_across_scalings():
    a = build(load("model.width=16", "model.scaling=mean_field"))
    b = build(load("model.width=16", "model.scaling=ntk"))
    np.testing.assert_array_equal(a.theta0, b.theta0)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    c = build(load("model.width=16", "seed=1"))
    assert not np.allclose(a.theta0, c.theta0)


def test_float32_config_gives_float32_particles():
    built = build(load("model.width=16", "dtype=float32"))
    assert built.theta0.dtype == np.float32 and built.train.x.dtype == np.float32


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-7 as a string; mfnn reads YAML 1.2 floats in files and --set
    path = tmp_path / "c.yaml"
    path.write_text("objective: {l2: 1e-3}\ndynamics: {dt: 5E-2}\n")
    cfg = config.load(str(path), ["dynamics.steps=100", "objective.l2=2e-4"])
    assert cfg.objective.l2 == 2e-4 and cfg.dynamics.dt == 0.05 and cfg.dynamics.steps == 100
    assert config.load(str(path)).objective.l2 == 1e-3


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "", "a\\b", "x" * 101, "tab\there"])
def test_name_must_be_one_folder_name(name):
    with pytest.raises(ConfigError, match=r"`name` must be one folder name"):
        load(raw={"name": name})


def test_a_plain_name_is_kept():
    assert load(raw={"name": "sign.wide-2_b"}).name == "sign.wide-2_b"
