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


def test_trainable_names_at_least_one_block():
    with pytest.raises(ConfigError, match=r"`model.trainable` must have at least 1 item.*got \[\]"):
        load("model.trainable=[]")
    assert load("model.trainable=[w]").model.trainable == ["w"]


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


# ------------------------------------------------ non-finite, absurd and odd values


def _float_fields(model=config.Config, prefix=""):
    """Dotted paths of every float field of the schema (lists of floats included)."""
    import typing

    for name, field in model.model_fields.items():
        args = typing.get_args(field.annotation) or (field.annotation,)
        sub = [a for a in args if isinstance(a, type) and issubclass(a, config.BaseModel)]
        if sub:
            yield from _float_fields(sub[0], f"{prefix}{name}.")
        elif _holds_float(field.annotation):
            yield f"{prefix}{name}"


def _holds_float(annotation) -> bool:
    import typing

    return annotation is float or any(_holds_float(a) for a in typing.get_args(annotation))


FLOAT_FIELDS = sorted(_float_fields())


def test_the_schema_has_the_float_fields_the_issue_names():
    for path in ("model.init.a.mean", "model.init.w.std", "objective.l2", "data.noise",
                 "dynamics.dt", "dynamics.langevin.beta", "data.teacher.w"):  # fmt: skip
        assert path in FLOAT_FIELDS


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("path", FLOAT_FIELDS)
def test_every_float_field_refuses_nan_and_inf(path, value):
    if path == "dynamics.langevin.beta_max" and value == ".inf":
        return  # +inf means "no cap" there (checked below)
    assert path != "dtype"
    outer = {"data.teacher.w": "[[X]]", "data.teacher.alpha": "[X]", "data.teacher.a": "[X]",
             "data.teacher.b": "[X]", "dynamics.langevin.values": "[X]",
             "dynamics.langevin.times": "[X]"}  # fmt: skip
    text = outer.get(path, "X").replace("X", value)
    with pytest.raises(ConfigError) as info:
        load(f"{path}={text}")
    msg = str(info.value)
    assert f"`{path}" in msg and ("finite" in msg or "no cap" in msg), msg
    assert "\n" not in msg


def test_beta_max_may_be_infinite_but_not_nan():
    raw = {"dynamics": {"integrator": "euler_maruyama", "langevin": {"beta": 2.0}}}
    assert load(raw=raw).dynamics.langevin.beta_max == float("inf")
    assert load("dynamics.langevin.beta_max=.inf", raw=raw).dynamics.langevin.beta_max > 1e308
    with pytest.raises(ConfigError, match=r"`dynamics.langevin.beta_max`.*or .inf.*; got nan"):
        load("dynamics.langevin.beta_max=.nan", raw=raw)
    with pytest.raises(ConfigError, match=r"`dynamics.langevin.beta_max`: must be a positive"):
        load("dynamics.langevin.beta_max=-.inf", raw=raw)


@pytest.mark.parametrize(
    ("seed", "ok"),
    [(0, True), (2**32 - 1, True), (2**32, False), (-1, False), (2**63, False), (10**30, False)],
)
def test_seed_bounds(seed, ok):
    """[0, 2^32): without float64 JAX keeps the low 32 bits (2^32 would be seed 0)."""
    if ok:
        assert load(f"seed={seed}").seed == seed
        return
    with pytest.raises(ConfigError, match=rf"`seed` must be an integer in \[0, .*got {seed}"):
        load(f"seed={seed}")


def test_seeds_below_the_bound_give_one_key_with_and_without_x64():
    """The honest bound: seeds below 2^32 give the same key in float32 runs (x64 off) and
    float64 runs; 2^32 gives the key of 0 without x64 (the reason for the bound)."""
    import jax
    from jax import random

    seeds = (0, 2**31, config.SEED_LIMIT - 1, config.SEED_LIMIT)
    keys = {}
    try:
        for x64 in (True, False):
            jax.config.update("jax_enable_x64", x64)
            keys[x64] = [random.key_data(random.key(s)).tolist() for s in seeds]
    finally:
        jax.config.update("jax_enable_x64", True)
    assert keys[True][:3] == keys[False][:3]
    assert keys[False][3] == keys[False][0] != keys[True][3]  # 2^32 wraps to 0 without x64


COUNT_FIELDS = [
    "model.width",
    "data.n_train",
    "data.n_test",
    "data.inputs.dim",
    "data.population.dim",
    "data.population.samples",
    "data.population.eval_samples",
    "dynamics.steps",
    "dynamics.batch_size",
    "record.every",
    "record.snapshot_every",
    "record.chunk",
    "record.entropy_k",
    "record.w2.projections",
]


@pytest.mark.parametrize("path", COUNT_FIELDS)
@pytest.mark.parametrize("value", ["2147483648", "1e12", "1e21", "10000000000000000000000"])
def test_counts_are_bounded_by_int32(path, value):
    with pytest.raises(ConfigError) as info:
        load(f"{path}={value}")
    msg = str(info.value)
    assert f"`{path}`" in msg and "2147483647" in msg, msg


def test_a_count_at_its_bound_is_valid():
    assert load("dynamics.steps=2147483647").dynamics.steps == config.MAX_COUNT
    assert load("dynamics.steps=1e3").dynamics.steps == 1000  # an integral float is fine


@pytest.mark.parametrize("value", ["true", "false", "yes"])
def test_an_integer_field_refuses_a_boolean(value):
    with pytest.raises(ConfigError, match=r"`model.width`.*not a boolean"):
        load(f"model.width={value}")
    assert load("model.bias=true").model.bias is True  # a bool field still takes one


def test_float_values_must_fit_the_dtype():
    with pytest.raises(ConfigError, match=r"`dynamics.dt` is 1e\+300, beyond the largest float32"):
        load("dtype=float32", "dynamics.dt=1e300")
    with pytest.raises(ConfigError, match=r"`data.teacher.w` is -1e\+39"):
        load("dtype=float32", "data.teacher={w: [[-1e39]]}")
    assert load("dynamics.dt=1e300").dynamics.dt == 1e300  # float64 holds it
    assert load("dtype=float32", "dynamics.dt=3e38").dynamics.dt == 3e38


@pytest.mark.parametrize("field", ["model.init.path", "data.path", "data.test_path",
                                   "data.teacher.path", "record.w2.reference"])  # fmt: skip
@pytest.mark.parametrize("value", ["''", "a" * 256, "/".join(["abc"] * 1100), "'a\\0b'"])
def test_path_fields_must_be_paths_the_system_can_open(field, value):
    text = f'"{value[1:-1]}"' if value.startswith("'") else value
    with pytest.raises(ConfigError) as info:
        load(f"{field}={text}")
    msg = str(info.value)
    assert f"`{field}`" in msg and "must be a file path" in msg and "\n" not in msg
    assert len(msg) < 600  # the value is shown cut


def test_long_and_odd_values_are_shown_short_and_on_one_line():
    with pytest.raises(ConfigError) as info:
        load("model.activation=" + "x" * 5000)
    assert len(str(info.value)) < 400 and "5002 characters" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load(raw={"\x1e": 1, "": 2, "model": {"a`b": 3}})
    msg = str(info.value)
    assert "`'\\x1e'`" in msg and "`''`" in msg and "\x1e" not in msg and "a`b" not in msg
    with pytest.raises(ConfigError, match=r"Key `1` at the top level must be a string"):
        load(raw={1: 2})


def test_experiment_params_may_not_expand_to_millions_of_values():
    x = [1.0] * 9
    for _ in range(6):
        x = [x] * 9  # what 7 lines of YAML aliases make: 9^7 values
    with pytest.raises(ConfigError, match=r"`experiment.params`.*more than 100000 values"):
        load(raw={"experiment": {"params": {"x": x}}})
    assert load(raw={"experiment": {"params": {"x": [1] * 100}}}).experiment.params


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("seed: 1" + "0" * 5000, "4300 digits"),
        ("seed: " + "[" * 1200 + "]" * 1200, "nesting too deep"),
        ("a:\t- b", "not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
    ],
)
def test_unreadable_yaml_is_one_paragraph(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"seed: \xff\xfe")
    with pytest.raises(ConfigError, match="cannot be read as UTF-8 text"):
        config.load(str(path))


def test_uniform_inputs_need_low_below_high():
    with pytest.raises(ConfigError, match=r"`data.inputs`.*`low` < `high`"):
        load("data.inputs.low=2")
    assert load("data.inputs.law=gaussian", "data.inputs.low=2").data.inputs.low == 2


def test_entropy_k_below_the_particle_count():
    raw = {
        "model": {"width": 3},
        "dynamics": {"integrator": "euler_maruyama", "langevin": {"beta": 2.0}},
        "record": {"entropy_k": 3},
    }
    with pytest.raises(ConfigError, match=r"`record.entropy_k` must be in \[1, m - 1\] = \[1, 2\]"):
        build(load(raw=raw))
    assert build(load("record.entropy_k=2", raw=raw)).recorder.entropy_k == 2
    assert build(load("record.entropy_k=0", "model.width=1", raw=raw)).recorder.entropy_k is None
