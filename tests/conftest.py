"""Shared test setup: float64 with strict dtype promotion, PRNG keys from a fixture."""

import json
import os

# The suite compiles ~2000 small programs and runs few long ones: LLVM's optimization level
# 1 (default 2) compiles them ~20 % faster and changes no result beyond round-off. Set
# before JAX starts its CPU backend, unless the user's XLA_FLAGS choose a level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    ).strip()

# `mfnn run`/`sweep` write report.html by default; the suite's many CLI runs skip it (the
# report tests turn it back on where they test that default)
os.environ["MFNN_REPORT"] = "off"
# every figure a test writes (through mfnn.plots.save_figure) must pass mfnn.style's audit:
# labelled axes, a title
os.environ.setdefault("MFNN_FIGURE_AUDIT", "strict")

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.cache import enable_compilation_cache

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
# compiled chunks are kept on disk between test runs (and shared with `mfnn` runs)
enable_compilation_cache()


def pytest_terminal_summary(terminalreporter):
    """One line when the browser tests were skipped, saying how to turn them on."""
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if "browser tests skipped" in reason:
            terminalreporter.write_line(reason.removeprefix("Skipped: "), yellow=True)
            return


def pytest_collection_modifyitems(config, items):
    """Full-size experiment runs last: a slow tier stopped at CI's time budget has then run
    every experiment's quick version (what the issue asks CI to run) first."""
    items.sort(key=lambda item: item.get_closest_marker("full") is not None)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module.

    Every executable XLA compiles for the CPU holds memory mappings of its own, and one
    pytest process compiles thousands of them: the suite measured ~100 new mappings per
    test, so a whole run passed the kernel's vm.max_map_count (65530) near the end and
    XLA segfaulted in a compile. Clearing the caches per module keeps the count bounded
    (a module's own functions stay compiled while it runs; the persistent compilation
    cache makes a recompile of a cleared function a disk read).
    """
    yield
    jax.clear_caches()
    import gc

    gc.collect()


@pytest.fixture
def key():
    """The root PRNG key of a test; derive others with `jax.random.fold_in`."""
    return jax.random.key(0)


def _make_problem(key, *, n=20, d=3, m=7, bias=True, dtype=jnp.float64):
    """A small regression problem: data (x, y) and particles theta (m, 1 + d + bias).

    Inputs x ~ N(0, I_d), targets y = tanh(x . u) + 0.1 x_1 (smooth, not representable
    exactly by the students), particles with i.i.d. N(0, 1) coordinates.
    """
    from mfnn import DataSet

    kx, ku, kt = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, d), dtype)
    u = jax.random.normal(ku, (d,), dtype)
    y = jnp.tanh(x @ u) + 0.1 * x[:, 0]
    theta = jax.random.normal(kt, (m, 1 + d + int(bias)), dtype)
    return DataSet(x, y), theta


@pytest.fixture
def make_problem():
    """Factory ``make_problem(key, n=, d=, m=, bias=, dtype=) -> (DataSet, theta)``."""
    return _make_problem


def log_slope(xs, ys) -> float:
    """Least-squares slope of log(ys) against log(xs) (a convergence order)."""
    return float(np.polyfit(np.log(np.asarray(xs)), np.log(np.asarray(ys)), 1)[0])


@pytest.fixture
def slope():
    """`log_slope` as a fixture (test modules are not a package, so no imports)."""
    return log_slope


def _resume_after_interrupt(out, victim, rerun):
    """Mark the sub-run ``out/runs/victim`` interrupted, resume with ``rerun()``, and check
    that only it ran again (every other sub-run's metrics.csv untouched) and completed.

    Returns (the resumed summary, {sub-run name: metrics.csv mtime} after the resume).
    """
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.csv")}
    path = out / "runs" / victim / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "interrupted"}))
    again = rerun()
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.csv")}
    for name, t in mtimes.items():
        if name != victim:
            assert after[name] == t, name
    assert json.loads(path.read_text())["status"] == "completed"
    return again, after


@pytest.fixture
def resume_after_interrupt():
    """`_resume_after_interrupt` as a fixture: (out, victim, rerun) -> (summary, mtimes)."""
    return _resume_after_interrupt
