"""Configs of the deep models: what builds, what runs and resumes, and what is refused with
a message naming the field (depth, two-layer-only options, teachers of another kind, input
dimensions, targets that do not fit the output)."""

import numpy as np
import pytest

from mfnn import config, rundir, runs
from mfnn.build import build
from mfnn.errors import ConfigError
from mfnn.measure import atomic_savez, load_particles
from mfnn.models import EnsembleResNet, Multilayer, WideResNet
from mfnn.objectives import ExpandedRisk, PopulationRisk
from tiers import first_by_default

BASE = {
    "ensemble_resnet": {"model": {"kind": "ensemble_resnet", "depth": 2, "width": 8}},
    "wide_resnet": {"model": {"kind": "wide_resnet", "depth": 3, "width": 4}},
    "multilayer": {"model": {"kind": "multilayer", "depth": 2, "width": 6}},
}
COMMON = {
    "data": {"target": "teacher", "teacher": {"width": 2}, "inputs": {"dim": 2}, "n_train": 16},
    "dynamics": {"dt": 0.1, "steps": 40},
    "record": {"every": 10, "snapshot_every": 20},
}


def cfg_of(kind, *overrides):
    raw = config.merge(COMMON, BASE[kind])
    raw = config.merge(raw, {"model": {"activation": "tanh", "init": {"w": {"std": 0.5}}}})
    return config.load(raw, list(overrides))


# multilayer (11 s) by default, the two ResNets (15-18 s each) in the slow tier
@pytest.mark.parametrize("kind", first_by_default(["multilayer", "ensemble_resnet", "wide_resnet"]))
def test_each_kind_builds_runs_resumes_and_round_trips(kind, tmp_path, monkeypatch):
    """Every deep kind runs through the ordinary run directory: snapshots in its own
    particle format, a resolved config.yaml that validates again, and a resume after an
    interrupt that is bit-identical to the uninterrupted run."""
    cfg = cfg_of(kind)
    built = build(cfg)
    want = {"ensemble_resnet": EnsembleResNet, "wide_resnet": WideResNet}.get(kind, Multilayer)
    assert isinstance(built.model, want)
    assert config.validate(config.parse_yaml(config.dump(built.config))) == built.config
    runs.execute(cfg, tmp_path / "full", progress=False)
    original = rundir.RunWriter.on_checkpoint

    def interrupt_at_20(self, state):
        original(self, state)
        if state.step == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", interrupt_at_20)
    _, _, s = runs.execute(cfg, tmp_path / "cut", progress=False)
    assert s["status"] == "interrupted"
    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", original)
    _, _, s = runs.execute(cfg, tmp_path / "cut", resume=True, progress=False)
    assert s["status"] == "completed", s
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert (full / "metrics.csv").read_bytes() == (cut / "metrics.csv").read_bytes()
    snaps = rundir.list_snapshots(cut)
    assert list(snaps) == [0, 20, 40]
    theta = load_particles(snaps[40], built.model)
    assert theta.shape == built.theta0.shape


def test_wide_resnet_records_its_flow_norm_and_expansion_objective():
    built = build(cfg_of("wide_resnet", "objective.expansion=2"))
    assert "flow_norm" in built.recorder.names()
    assert isinstance(built.objective, ExpandedRisk) and built.objective.order == 2
    assert "flow_norm" not in build(cfg_of("wide_resnet", "record.flow_norm=0")).recorder.names()


def test_monte_carlo_population_of_a_deep_teacher():
    """`data.population` with a deep teacher: the risk on a fixed evaluation sample, fresh
    samples every step."""
    raw = config.merge(BASE["ensemble_resnet"], {"model": {"activation": "tanh"}})
    raw["data"] = {
        "population": {"dim": 2, "method": "monte_carlo", "eval_samples": 64, "samples": 8},
        "teacher": {"width": 1},
    }
    built = build(config.load(raw))
    assert isinstance(built.objective, PopulationRisk)
    assert built.objective.y.shape == (64, 2)


def test_a_particle_file_sets_the_width(tmp_path):
    model = WideResNet(d=2, depth=3)
    theta = np.random.default_rng(0).normal(size=(3 * 5, 4))
    atomic_savez(tmp_path / "p.npz", **model.particle_arrays(theta))
    cfg = config.load(
        config.merge(COMMON, BASE["wide_resnet"]),
        ["model.init.path=" + str(tmp_path / "p.npz"), "model.activation=tanh"],
    )
    cfg.model.model_fields_set.discard("width")
    built = build(cfg)
    assert built.config.model.width == 5 and built.theta0.shape == (15, 4)
    ml = Multilayer(d=2, width=7)
    atomic_savez(tmp_path / "m.npz", **ml.particle_arrays(np.ones((7, ml.dim))))
    raw = config.merge(
        COMMON, {"model": {"kind": "multilayer", "init": {"path": str(tmp_path / "m.npz")}}}
    )
    built = build(config.load(raw))
    assert built.model.units == 7 and built.config.model.width == 7


BAD = [
    (["model.depth=null"], "ensemble_resnet", "needs `model.depth`"),
    (["model.bias=false"], "wide_resnet", "`model.bias` is an option of `model.kind: two_layer`"),
    (["model.trainable=[w]"], "ensemble_resnet", "`model.trainable` is an option"),
    (["model.scaling=ntk"], "wide_resnet", "must be mean_field"),
    (["model.depth=1"], "multilayer", "H >= 2"),
    (["model.solver=tsit5"], "ensemble_resnet", "option of `model.kind: wide_resnet`"),
    (["objective.expansion=1"], "multilayer", "needs `model.kind: wide_resnet`"),
    (
        ["dynamics.integrator=euler_maruyama", "dynamics.langevin.beta=10"],
        "multilayer",
        "not defined for `model.kind: multilayer`",
    ),
    (["data.teacher.w=[[1.0, 0.0]]"], "ensemble_resnet", "two-layer teacher's option"),
    (["data.teacher.alpha=[0.5, 0.5]"], "wide_resnet", "for `model.kind: ensemble_resnet`"),
    (["data.target=sign"], "ensemble_resnet", "output is a vector in R^2"),
    (["data.teacher.width=3", "data.teacher.alpha=[0.5, 0.5]"], "ensemble_resnet", "3 weights"),
]


@pytest.mark.parametrize("overrides, kind, match", BAD)
def test_bad_deep_configs_name_the_field(overrides, kind, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace("^", r"\^")):
        build(cfg_of(kind, *overrides))


def test_two_layer_refuses_deep_options():
    for over, match in (
        (["model.depth=3"], "`model.depth` is an option of the deep models"),
        (["objective.expansion=1"], "needs `model.kind: wide_resnet`"),
        (["data.target=teacher", "data.teacher.width=2"], "draws a deep teacher"),
    ):
        with pytest.raises(ConfigError, match=match):
            config.load({}, over)


def test_population_closed_form_refused_for_a_deep_model():
    raw = config.merge(BASE["wide_resnet"], {"data": {"population": {"dim": 2}, "teacher": {}}})
    with pytest.raises(ConfigError, match="closed_form"):
        config.load(raw)


def test_teacher_of_another_kind_or_dimension(tmp_path):
    """A two-layer teacher file for a ResNet student, and a ResNet teacher on R^3 for a
    student on R^2: both refused, naming the teacher's field."""
    atomic_savez(tmp_path / "two.npz", w=np.ones((2, 2)), a=np.ones(2))
    with pytest.raises(ConfigError, match="data.teacher.path.*two-layer network"):
        build(
            cfg_of(
                "ensemble_resnet",
                f"data.teacher.path={tmp_path / 'two.npz'}",
                "data.teacher.width=null",
            )
        )
    three = EnsembleResNet(d=3, depth=2)
    atomic_savez(tmp_path / "e3.npz", **three.particle_arrays(np.ones((1, three.dim))))
    with pytest.raises(ConfigError, match=r"data.teacher.path.*\(N, 2, 2, 2\)"):
        build(
            cfg_of(
                "ensemble_resnet",
                f"data.teacher.path={tmp_path / 'e3.npz'}",
                "data.teacher.width=null",
            )
        )
