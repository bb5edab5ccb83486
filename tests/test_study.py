"""The study runner (`mfnn.study`): a declared experiment is planned, run, reused, checked
(every sub-run check counts unless declared informational) and summarized."""

import json

import numpy as np
import pytest
from pydantic import Field

from mfnn import ConfigError, config
from mfnn.study import Call, CheckSpec, Experiment, Params, Run, check, collect_checks, verdict

TINY = {
    "name": "toy",
    "model": {"width": 8, "activation": "tanh"},
    "data": {"n_train": 16, "n_test": 8},
    "dynamics": {"dt": 0.05, "steps": 20},
    "record": {"every": 10, "snapshot_every": 20},
}


class ToyParams(Params):
    widths: tuple[int, ...] = Field((8, 16), description="one run a width")
    bound: float = Field(1.0, gt=0, description="final loss <= bound")


def square(x: float) -> dict:
    return {"square": x * x}


def plan(s):
    out = {f"m{m}": Run(s.sub_config(f"m{m}", {"model.width": m})) for m in s.params.widths}
    return out | {"square": Call(square, {"x": 3.0})}


def analyze(s, results):
    losses = {n: float(results[n].metrics["loss"][-1]) for n in ("m8", "m16")}
    return {"losses": losses, "square": results["square"].value["square"], "_private": [1]}


def evaluate(s, stats):
    worst = max(stats["losses"].values())
    return {
        "small_loss": check(worst, f"max final loss <= {s.params.bound}", worst <= s.params.bound),
        "square": check(stats["square"], "== 9", stats["square"] == 9.0),
    }


TOY = Experiment(
    name="toy",
    summary="a toy",
    claim="Toy claim.",
    params=ToyParams,
    quick=(),
    checks=(
        CheckSpec("small_loss", "max final loss <= bound"),
        CheckSpec("square", "== 9"),
        CheckSpec("m16/energy_identity", "declared informational", informational="a reason"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
)


def cfg(**params):
    return config.load(config.merge(TINY, {"experiment": {"params": params}}))


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    return out, TOY.run(cfg(), out, progress=False)


def test_summary_has_every_check_the_verdict_and_the_reasons(done):
    out, s = done
    assert s["status"] == "completed" and s["passed"] is True
    assert set(s["checks"]) == {
        "small_loss", "square", "m8/energy_identity", "m16/energy_identity"
    }  # fmt: skip
    assert s["checks"]["m16/energy_identity"]["informational"] == "a reason"
    assert s["informational"] == {"m16/energy_identity": "a reason"}
    assert "informational" not in s["checks"]["m8/energy_identity"]
    assert s["params"] == {"widths": [8, 16], "bound": 1.0}
    assert "_private" not in s and s["square"] == 9.0
    assert json.loads((out / "summary.json").read_text())["checks"] == s["checks"]
    for name in ("m8", "m16"):
        sub = config.load(config.read_yaml(out / "runs" / name / "config.yaml"))
        assert sub.experiment.name is None and sub.name == f"toy-{name}"
    assert (out / "runs" / "square" / "result.json").is_file()


def test_a_second_run_reuses_every_finished_sub_run(done):
    out, s = done
    mtime = (out / "runs" / "m8" / "metrics.csv").stat().st_mtime_ns
    again = TOY.run(cfg(), out, progress=False)
    assert again["timing"]["reused"] == ["m16", "m8", "square"]
    assert (out / "runs" / "m8" / "metrics.csv").stat().st_mtime_ns == mtime
    assert again["checks"] == s["checks"]


def test_a_failing_sub_run_check_fails_the_verdict_unless_informational():
    own = {"square": check(9.0, "== 9", True)}

    class Done:
        def __init__(self, passed):
            self.summary = {"checks": {"energy_identity": check(0.5, "<= 0.1", passed)}}

    checks, reasons = collect_checks(TOY, own, {"m8": Done(False), "m16": Done(False)})
    assert verdict(checks) is False  # m8's counts
    checks, _ = collect_checks(TOY, own, {"m8": Done(True), "m16": Done(False)})
    assert verdict(checks) is True and reasons == {"m16/energy_identity": "a reason"}
    assert verdict({}) is False  # no check that counts: nothing was shown


def test_an_undeclared_check_is_an_error():
    with pytest.raises(RuntimeError, match="none of its CheckSpecs declares"):
        collect_checks(TOY, {"surprise": check(1.0, "?", True)}, {})


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"bund": 1.0}, "Unknown key `experiment.params.bund`. Did you mean"),
        ({"bound": -1.0}, "`experiment.params.bound` must be greater than 0"),
        ({"widths": "many"}, "`experiment.params.widths`"),
    ],
)
def test_bad_params_name_the_field(tmp_path, params, match):
    with pytest.raises(ConfigError, match=match.replace(".", r"\.").replace("(", r"\(")):
        TOY.run(cfg(**params), tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_an_interrupted_study_stops_and_says_so(tmp_path):
    def stop(x):
        raise KeyboardInterrupt

    halted = Experiment(**{**TOY.__dict__, "plan": lambda s: {"stop": Call(stop, {"x": 1})}})
    with pytest.raises(KeyboardInterrupt):
        halted.run(cfg(), tmp_path, progress=False)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted"


def test_input_files_are_named_by_content(tmp_path):
    from mfnn.study import Study

    s = Study(TOY, cfg(), TOY.validate_params(cfg()), tmp_path)
    a = s.input_file("init", w=np.zeros(3))
    assert s.input_file("init", w=np.zeros(3)) == a and a.is_absolute()
    b = s.input_file("init", w=np.ones(3))
    assert b != a and np.load(b)["w"].tolist() == [1.0, 1.0, 1.0]


def test_describe_lists_params_and_checks():
    text = TOY.describe()
    assert "widths: tuple[int, ...] = (8, 16)" in text and "(> 0)" in text
    assert "m16/energy_identity: declared informational" in text
    assert "*/energy_identity" in text
