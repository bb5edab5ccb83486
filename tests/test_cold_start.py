"""Commands that need no arrays start without JAX: the listing and description of the
experiments (`mfnn experiments [NAME]`, `mfnn --help`) import none of the heavy libraries,
each in a fresh interpreter; what the laziness relies on (names kept in two places, the
jit made at the first call) agrees with the library."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

HEAVY = ("jax", "jaxlib", "equinox", "matplotlib", "scipy", "ot", "dask", "distributed", "diffrax")

# run in a fresh interpreter: ``BODY`` does the work, then the heavy modules loaded are
# printed as the last line (JSON)
PROBE = """
import json, sys
{body}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""

LISTING = """
from typer.testing import CliRunner

import mfnn.cli
from mfnn.experiments import EXPERIMENTS

texts = [e.describe() for e in EXPERIMENTS.values()]
configs = [e.default_config() for e in EXPERIMENTS.values()]
runner = CliRunner()
listing = runner.invoke(mfnn.cli.app, ["experiments"], catch_exceptions=False)
sign = runner.invoke(mfnn.cli.app, ["experiments", "sign"], catch_exceptions=False)
help_ = runner.invoke(mfnn.cli.app, ["--help"], catch_exceptions=False)
assert listing.exit_code == sign.exit_code == help_.exit_code == 0
names = [line.split()[0] for line in listing.stdout.splitlines()]
assert names == list(EXPERIMENTS), names
assert sign.stdout.startswith("sign: ") and "Checks:" in sign.stdout
assert all(t.count("Params:") == 1 for t in texts) and all(configs)
"""


def loaded_heavy(body: str, env: dict | None = None) -> list[str]:
    """The heavy modules in ``sys.modules`` after ``body`` runs in a fresh interpreter."""
    code = PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_listing_and_describing_import_no_heavy_library():
    assert loaded_heavy(LISTING) == []


def test_console_script_lists_without_jax(tmp_path):
    # `main` (the console script) turns the compilation cache on only for a command that
    # may compile: the listing leaves JAX unimported
    body = (
        "import mfnn.cli\n"
        "sys.argv = ['mfnn', 'experiments']\n"
        "try:\n    mfnn.cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    )
    assert loaded_heavy(body, {"MFNN_CACHE_DIR": str(tmp_path / "cache")}) == []
    assert not (tmp_path / "cache").exists()


def test_console_script_turns_the_cache_on_for_a_run_command(tmp_path):
    # the same path for `resume` (bad input: exits 2) does turn the cache on, in the folder
    # MFNN_CACHE_DIR names, before the command's body runs
    body = (
        "import mfnn.cli\n"
        f"sys.argv = ['mfnn', 'resume', {str(tmp_path / 'missing')!r}]\n"
        "try:\n    mfnn.cli.main()\nexcept SystemExit as e:\n    assert e.code == 2, e.code\n"
        "import jax\n"
        f"assert jax.config.jax_compilation_cache_dir == {str(tmp_path / 'cache')!r}\n"
    )
    assert "jax" in loaded_heavy(body, {"MFNN_CACHE_DIR": str(tmp_path / "cache")})
    assert (tmp_path / "cache").is_dir()


def test_the_probe_sees_an_import():
    # negative control: the probe reports JAX once something imports it
    got = loaded_heavy("import mfnn.experiments\nimport mfnn.simulate")
    assert {"jax", "jaxlib", "equinox"} <= set(got)
    assert "scipy" in loaded_heavy(
        "from mfnn.stats import loglog_fit\nloglog_fit([1, 2, 4], [1, 3, 5])"
    )


def test_names_kept_without_jax_match_the_library():
    from mfnn import config, measure, rundir
    from mfnn.diagnostics.teacher import EXAMPLE_2
    from mfnn.experiments.stationary_1d import Stationary1DParams
    from mfnn.models import resnet

    assert (config.SOLVERS, config.ODE_SOLVERS) == (resnet.SOLVERS, resnet.ODE_SOLVERS)
    assert Stationary1DParams().activations == tuple(EXAMPLE_2)
    assert measure.atomic_savez is rundir.atomic_savez
    assert measure.atomic_write is rundir.atomic_write


def test_an_unknown_activation_is_still_refused():
    from mfnn.config import validate
    from mfnn.errors import ConfigError

    with pytest.raises(ConfigError, match="model.activation.*known activation.*relu"):
        validate({"model": {"activation": "reluu"}})


def test_filter_jit_compiles_once_per_shape_and_computes_the_function():
    from mfnn.experiments.common import filter_jit

    traces = []

    def f(x, n: int):
        traces.append(x.shape)
        return jnp.cumsum(x) * n

    g = filter_jit(f)
    x = jnp.arange(1.0, 5.0)
    np.testing.assert_allclose(g(x, 2), [2.0, 6.0, 12.0, 20.0])  # 2 * partial sums
    np.testing.assert_allclose(g(2 * x, 2), [4.0, 12.0, 24.0, 40.0])
    assert traces == [(4,)]  # the second call reused the compiled program
    g(jnp.ones(3), 2)
    g(x, 3)  # a static int argument: a new program, as equinox.filter_jit does
    assert traces == [(4,), (3,), (4,)]
    assert g.__name__ == "f" and g.__wrapped__ is f
