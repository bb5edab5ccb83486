"""Input files (particles, data, teacher) that are not usable are refused by `build` with a
`ConfigError` naming the field and the file: never a traceback, never numpy's
``allow_pickle`` advice, and nothing is ever unpickled."""

import numpy as np
import pytest

from mfnn import config
from mfnn.build import build
from mfnn.errors import ConfigError
from mfnn.measure import npz_headers, read_npz
from npz_files import write_npz

GOOD = {
    "model.init.path": {"a": np.ones(5), "w": np.full((5, 2), 0.3), "b": np.zeros(5)},
    "data.path": {"x": np.linspace(-1, 1, 12).reshape(6, 2), "y": np.linspace(0, 1, 6)},
    "data.test_path": {"x": np.linspace(-1, 1, 8).reshape(4, 2), "y": np.zeros(4)},
    "data.teacher.path": {"w": np.eye(2), "alpha": np.array([0.5, 0.5])},
}


def write(path, field, kind):
    write_npz(path, GOOD[field], kind)


def raw_for(field, name):
    raw = {"model": {"width": 5}, "data": {"n_train": 8, "n_test": 4, "inputs": {"dim": 2}}}
    if field == "data.teacher.path":
        raw["data"]["target"] = "teacher"
        raw["data"]["teacher"] = {"path": name}
    else:
        config.set_path(raw, field, name)
    return raw


# (kind, words of the message besides the field and the file name)
BROKEN = [
    ("empty", ["0"]),
    ("strings", ["not numbers"]),
    ("nan", ["NaN or inf"]),
    ("inf_in_one", ["NaN or inf"]),
    ("complex", ["not numbers"]),
    ("wrong_shape", ["(2, 3, 4)"]),
    ("pickled_object", ["not numbers", "pickled"]),
    ("npy", ["not an npz"]),
    ("pickle", ["not an npz"]),
    ("garbage", ["not an npz"]),
    ("empty_file", ["not an npz"]),
    ("truncated", [""]),
    ("huge_header", ["memory", "TiB"]),
]


@pytest.mark.parametrize("field", list(GOOD))
def test_a_good_file_builds(tmp_path, field):
    write(tmp_path / "f.npz", field, "good")
    built = build(config.load(raw_for(field, "f.npz")), base=tmp_path)
    assert built.theta0.shape[1] == 4  # (a, w in R^2, b)


@pytest.mark.parametrize(("kind", "words"), BROKEN)
@pytest.mark.parametrize("field", list(GOOD))
def test_a_broken_file_names_the_field_and_the_file(tmp_path, field, kind, words):
    write(tmp_path / "f.npz", field, kind)
    with pytest.raises(ConfigError) as info:
        build(config.load(raw_for(field, "f.npz")), base=tmp_path)
    msg = str(info.value)
    assert f"`{field}`" in msg and "f.npz" in msg, msg
    assert "allow_pickle" not in msg and "unpickled" not in msg, msg
    assert all(w in msg for w in words), msg


@pytest.mark.parametrize("field", list(GOOD))
def test_a_missing_file_or_a_folder(tmp_path, field):
    with pytest.raises(ConfigError, match=rf"`{field}`.*does not exist"):
        build(config.load(raw_for(field, "nope.npz")), base=tmp_path)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ConfigError, match=rf"`{field}`.*dir.npz"):
        build(config.load(raw_for(field, "dir.npz")), base=tmp_path)


def test_a_home_path_of_an_unknown_user(tmp_path):
    with pytest.raises(ConfigError, match=r"`model.init.path`: cannot use the path"):
        build(config.load(raw_for("model.init.path", "~nosuchuser_mfnn/p.npz")))


def test_particles_beyond_float32_are_refused_in_a_float32_run(tmp_path):
    np.savez(tmp_path / "p.npz", a=np.full(5, 1e300), w=np.ones((5, 2)), b=np.zeros(5))
    raw = config.merge(raw_for("model.init.path", "p.npz"), {"dtype": "float32"})
    with pytest.raises(ConfigError, match=r"`model.init.path`.*beyond the range of float32"):
        build(config.load(raw), base=tmp_path)
    # negative control: float64 holds them
    assert build(config.load(raw_for("model.init.path", "p.npz")), base=tmp_path).theta0.size


def test_headers_are_read_without_loading(tmp_path):
    np.savez(tmp_path / "p.npz", a=np.ones(3), w=np.ones((3, 2), np.float32))
    heads = npz_headers(tmp_path / "p.npz")
    assert heads["a"] == ((3,), np.dtype(np.float64)) and heads["w"][0] == (3, 2)
    arrays = read_npz(tmp_path / "p.npz", "model.init.path")
    assert set(arrays) == {"a", "w"} and arrays["w"].dtype == np.float32


@pytest.mark.parametrize("field", ["model.init.w", "data.inputs"])
def test_laws_that_overflow_the_dtype_are_refused(field):
    if field == "model.init.w":
        over = {"model": {"width": 4, "init": {"w": {"mean": 3e38, "std": 3e38}}}}
        needle = r"initial particles hold NaN or inf.*`model.init`"
    else:
        over = {"model": {"width": 4}, "data": {"inputs": {"low": -1e308, "high": 1e308}}}
        needle = r"sampled train data hold NaN or inf.*`data.inputs`"
    with pytest.raises(ConfigError, match=needle):
        build(config.load(config.merge({"dtype": "float32"} if "init" in field else {}, over)))
