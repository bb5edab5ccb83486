"""Reports (`mfnn.report`): what each page holds, escaping, links, the gallery, the CLI.

The same pages are opened in a real browser by tests/test_report_browser.py."""

import base64
import hashlib
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from mfnn import report
from mfnn.cli import app
from mfnn.errors import ConfigError
from mfnn.style import log_scale
from report_dirs import (
    EVIL_CLAIM,
    EVIL_NAME,
    EVIL_PARAM,
    local_links,
    shared_dirs,
)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    out = shared_dirs(tmp_path_factory, tmp_path_factory.mktemp("reports"))
    out["pages"] = {k: report.write_report(out[k], animate=False) for k in list(out)}
    return out


def rows(page_text: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="{cls} (\w+)">', page_text)


def test_kinds_and_bad_paths(dirs, tmp_path):
    assert report.directory_kind(dirs["run"]) == "run"
    assert report.directory_kind(dirs["experiment"]) == "experiment"
    assert report.directory_kind(dirs["sweep"]) == "sweep"
    assert report.directory_kind(dirs["experiment"] / "runs" / "m8") == "run"
    with pytest.raises(ConfigError, match="neither a run"):
        report.write_report(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        report.write_report(tmp_path / "f")


def test_run_page_escapes_its_config_and_lists_every_check(dirs):
    page = dirs["pages"]["run"]
    text = page.read_text()
    assert EVIL_NAME not in text and "&lt;img src=x onerror=window.__pwned=1&gt;" in text
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    assert rows(text, "check") == [
        "pass" if c["passed"] else "fail" for c in summary["checks"].values()
    ]
    assert text.count('<svg class="chart"') >= 4  # risk, energy, dissipation, identity, ...
    for link in local_links(page):
        assert link.exists(), link


def test_the_only_script_is_ours_and_the_policy_names_its_hash(dirs):
    text = dirs["pages"]["run"].read_text()
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    assert scripts == [report._SCRIPT]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in text
    assert "http://" not in text and "https://" not in text  # nothing remote


def test_experiment_page_counts_pass_fail_and_informational_checks(dirs):
    text = dirs["pages"]["experiment"].read_text()
    assert EVIL_CLAIM not in text and "&lt;img src=x onerror=" in text
    assert EVIL_PARAM not in text and "&lt;script&gt;window.__pwned = 3&lt;/script&gt;" in text
    summary = json.loads((dirs["experiment"] / "summary.json").read_text())
    want = [
        "info" if c.get("informational") else ("pass" if c["passed"] else "fail")
        for c in summary["checks"].values()
    ]
    assert rows(text, "check") == want and "fail" in want and "info" in want
    assert "claim NOT held" in text  # the toy's impossible check fails on purpose
    for sub in ("m8", "m16"):  # sub-run reports, linked both ways
        sub_page = dirs["experiment"] / "runs" / sub / "report.html"
        assert f'href="runs/{sub}/report.html"' in text
        assert 'href="../../report.html"' in sub_page.read_text()
    for link in local_links(dirs["pages"]["experiment"]):
        assert link.exists(), link


def test_sweep_page_has_one_sortable_row_per_point(dirs):
    text = dirs["pages"]["sweep"].read_text()
    points = json.loads((dirs["sweep"] / "sweep.json").read_text())["points"]
    assert len(rows(text, "point")) == len(points) == 2
    assert 'class="sortable points"' in text
    for name in points:
        assert (dirs["sweep"] / "points" / name / "report.html").is_file()
    for link in local_links(dirs["pages"]["sweep"]):
        assert link.exists(), link


def test_gallery_has_a_card_per_experiment(dirs, tmp_path):
    page = report.write_gallery(dirs["experiment"].parent)
    text = page.read_text()
    assert text.count('<div class="card ') == 1 and "report_toy" in text
    assert EVIL_CLAIM not in text
    for link in local_links(page):
        assert link.exists(), link
    with pytest.raises(ConfigError, match="no experiment directory"):
        report.write_gallery(tmp_path)


def test_log_axis_rule():
    t = np.linspace(0, 10, 50)
    assert log_scale(np.exp(-t))  # a decaying positive quantity: log
    assert not log_scale(1 + 0.1 * np.sin(t))  # barely moves: linear
    assert not log_scale(np.exp(-t) - 0.5)  # changes sign: linear
    assert log_scale([1.0, np.nan, 1e-3])  # NaN (a missing record) is ignored


def test_cli_report_and_run_write_the_page(dirs, tmp_path, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(dirs["run"]), "--no-animate"])
    assert res.exit_code == 0 and "report.html" in res.output
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "neither a run" in res.output
    monkeypatch.delenv("MFNN_REPORT", raising=False)  # the suite turns reports off
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {width: 8}\ndata: {n_train: 16, n_test: 0}\n"
        "dynamics: {dt: 0.1, steps: 10}\nrecord: {every: 5}\n"
    )
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.html").is_file() and "report:" in res.output
    res = runner.invoke(
        app, ["run", str(cfg), "--out", str(tmp_path / "q"), "--no-progress", "--no-report"]
    )
    assert res.exit_code == 0 and not (tmp_path / "q" / "report.html").exists()


def test_svg_chart_axis_rule_breaks_and_positions():
    t = np.linspace(0.0, 10.0, 11)
    decay = report.svg_chart(t, {"R": np.exp(-t)}, title="risk", ylabel="R")
    assert "(log scale)" in decay and decay.count("<polyline") == 1
    signed = report.svg_chart(t, {"F": np.cos(t)}, title="F", ylabel="F")
    assert "(linear scale)" in signed
    gap = np.exp(-t)
    gap[5] = np.nan  # a missing record breaks the line in two
    assert report.svg_chart(t, {"R": gap}, title="r", ylabel="R").count("<polyline") == 2
    # the first point of a log chart spanning 1..1e-10 sits at the top of the frame, the
    # last at the bottom (top = 26, height 220 - 26 - 40 = 154)
    pts = re.search(r'points="([^"]+)"', decay).group(1).split()
    ys = [float(p.split(",")[1]) for p in pts]
    assert ys[0] == pytest.approx(26.0, abs=0.2) and ys == sorted(ys)
    assert report.svg_chart(t, {"x": np.full(11, np.nan)}, title="x", ylabel="x") == ""
