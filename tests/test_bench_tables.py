"""The benchmark table renderer (benchmarks/tables.py) and runner (benchmarks/run_all.py).

The renderer on small fake JSON files and a README with markers: the rows, columns and
number formats it writes, that prose outside the markers is kept byte for byte, that
rendering is idempotent, that ``--check`` finds a stale table, that a missing JSON leaves
its table. The runner's commands (which scripts, options, output paths, tags) by
``--dry-run``, and its loop on tiny stand-in scripts (one failing: the others still run,
the exit code is 1). No benchmark runs here.
"""

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tables = _load("bench_tables_under_test", "tables.py")
run_all = _load("bench_run_all_under_test", "run_all.py")
T, S, C, Calc, Mark = tables.Table, tables.Source, tables.Col, tables.Calc, tables.Mark

ROWS_A = [
    {"n": 1000, "dtype": "float32", "rate": 12345.678, "ratio": 0.98765, "approx": False,
     "steps": 51200},
    {"n": 20000, "dtype": "float64", "rate": 0.012345, "ratio": 13.826, "approx": True,
     "steps": 2721801},
]  # fmt: skip
DOC_A = {
    "meta": {"date": "Thu Dec  3 17:55:04 2026", "load": [1.5, 1.0, 0.5]},
    "cpu_count": 2,
    "rows": ROWS_A,
    "result": {"x_s": 3.5103, "y_s": 15.87, "up_y": 1.2571},
}
# the second file lists the same keys in the other order, plus one the first lacks
DOC_B = {"rows": [{"n": 20000, "dtype": "float64", "rate": 2.0},
                  {"n": 1000, "dtype": "float32", "rate": 4.0},
                  {"n": 300, "dtype": "float32", "rate": 8.0}]}  # fmt: skip

SPECS = {
    "main": T(
        sources={
            "a": S("a.json", "rows", key=("n", "dtype")),
            "b": S("b.json", "rows", key=("n", "dtype")),
        },
        cols=(
            C("n", "n", "text"),
            C("dtype", "dtype", {"float32": "f32", "float64": "f64"}),
            C("rate", "a:rate", unit=" /s"),
            C("b rate", "b:rate", "f1"),
            C("a / b", Calc("ratio", ("a:rate", "b:rate")), "g3"),
            C("steps", "steps", "count", marks=(Mark("approx", "~{value}"),)),
            C("ratio", "ratio", "f2", unit="x", marks=(Mark("n", "({value})", equals=20000),)),
        ),
    ),
    "union": T(
        sources={"a": S("a.json", "rows", key=("n",)), "b": S("b.json", "rows", key=("n",))},
        join="union",
        sort="n",
        cols=(C("n", "n", "text"), C("a", "a:rate", "e1"), C("b", "b:rate", "int")),
    ),
    "items": T(
        sources={"a": S("a.json", "result")},
        items=({"label": "first", "p": "x"}, {"label": "second", "p": "y", "w": "{value} (!)"}),
        defaults={"w": "{value}"},
        cols=(
            C("", text="{label}"),
            C("time", "{p}_s", "dur", wrap="{w}"),
            C("up", "up_{p}", "f2", unit="x"),
            C("both", ("/result/x_s", "/result/y_s")),
        ),
    ),  # fmt: skip
    "missing": T(sources={"z": S("absent.json", "rows")}, cols=(C("n", "n"),)),
}

README = """# Title

Intro prose, | with a pipe, left alone.

<!-- table: main -->
| old | stuff |
<!-- /table -->

Middle prose.

<!-- table: union -->
<!-- /table -->

<!-- table: items -->
<!-- /table -->

<!-- table: missing -->
| kept | as | it | is |
<!-- /table -->

End.
"""

EXPECTED_MAIN = """\
Source: `results/a.json` (run 2026-12-03 17:55, load average 1.50 on 2 CPUs); `results/b.json` (date not recorded, load not recorded).

| n | dtype | rate | b rate | a / b | steps | ratio |
|---|---|---|---|---|---|---|
| 1000 | f32 | 12 300 /s | 4.0 | 3 090 | 51 200 | 0.99x |
| 20000 | f64 | 0.012 /s | 2.0 | 0.00617 | ~2.7e6 | (13.83x) |

"""  # noqa: E501

EXPECTED_UNION = """\
| n | a | b |
|---|---|---|
| 300 | | 8 |
| 1000 | 1.2e4 | 4 |
| 20000 | 1.2e-2 | 2 |
"""

EXPECTED_ITEMS = """\
| | time | up | both |
|---|---|---|---|
| first | 3.5 s | | 3.5 / 15.9 |
| second | 15.9 s (!) | 1.26x | 3.5 / 15.9 |
"""


@pytest.fixture
def tree(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(DOC_A))
    (results / "b.json").write_text(json.dumps(DOC_B))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    return readme, results


def _args(readme, results, *extra):
    return ["--readme", str(readme), "--results", str(results), *extra]


def _block(text: str, name: str) -> str:
    m = re.search(rf"<!-- table: {name} -->\n(.*?)<!-- /table -->", text, re.S)
    assert m is not None, name
    return m.group(1)


def _outside(text: str) -> str:
    return re.sub(r"(<!-- table: \w+ -->\n).*?(<!-- /table -->)", r"\1\2", text, flags=re.S)


@pytest.mark.parametrize(
    ("x", "fmt", "want"),
    [
        (2508.86, "g", "2 510"),  # two significant digits below 10, three from 10 on
        (6.7197, "g", "6.7"),
        (22.005, "g", "22.0"),
        (0.04994, "g", "0.050"),
        (24803, "g", "24 800"),
        (9.96, "g", "9.96"),  # rounds to 10: three digits then
        (-1234567.0, "int", "-1 234 567"),
        (0.6923, "f2", "0.69"),
        (1e-4, "e0", "1e-4"),
        (2.397e-5, "e1", "2.4e-5"),
        (0.001953125, "e2", "1.95e-3"),
        (51200, "count", "51 200"),
        (272180075, "count", "2.7e8"),
        (0.02577, "dur", "0.026 s"),
        (293.79, "dur", "294 s"),
        (1500.0, "dur", "25.0 min"),
        (29379.3, "dur", "8.2 h"),
        (21514, "bytes", "21.5 kB"),
        (390644, "bytes", "0.39 MB"),
        ([64, 64], "shape", "64 x 64"),
        ([16384], "shape", "16384"),
        (0.97854, "g3", "0.979"),
    ],
)
def test_formats(x, fmt, want):
    assert tables.format_value(x, fmt) == want


def test_format_refuses_a_string_for_a_number_format():
    with pytest.raises(TypeError, match="needs a number"):
        tables.format_value("12", "g")


def test_rows_columns_formats(tree):
    readme, results = tree
    assert tables.main(_args(readme, results), tables=SPECS) == 0
    text = readme.read_text()
    assert _block(text, "main") == EXPECTED_MAIN
    union = _block(text, "union")
    assert union.splitlines()[0] == EXPECTED_MAIN.splitlines()[0]  # the same two files
    assert union.split("\n\n")[1] + "\n" == EXPECTED_UNION
    assert _block(text, "items").split("\n\n")[1] + "\n" == EXPECTED_ITEMS


def test_prose_kept_and_rendering_idempotent(tree):
    readme, results = tree
    once, notes = tables.render_text(README, results, readme.parent, SPECS)
    twice, _ = tables.render_text(once, results, readme.parent, SPECS)
    assert twice == once
    assert _outside(once) == _outside(README)
    assert notes == [f"table missing: {results / 'absent.json'} is missing; left as it is"]
    # through the CLI: the second run writes nothing and the file keeps its bytes
    assert tables.main(_args(readme, results), tables=SPECS) == 0
    first = readme.read_bytes()
    mtime = readme.stat().st_mtime_ns
    assert tables.main(_args(readme, results), tables=SPECS) == 0
    assert readme.read_bytes() == first and readme.stat().st_mtime_ns == mtime


def test_check_finds_a_stale_table(tree, capsys):
    readme, results = tree
    assert tables.main(_args(readme, results, "--check"), tables=SPECS) == 1  # never rendered
    assert readme.read_text() == README  # --check writes nothing
    assert tables.main(_args(readme, results), tables=SPECS) == 0
    assert tables.main(_args(readme, results, "--check"), tables=SPECS) == 0
    doc = json.loads((results / "b.json").read_text())
    doc["rows"][0]["rate"] = 3.5  # one number of one file changes
    (results / "b.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert tables.main(_args(readme, results, "--check"), tables=SPECS) == 1
    assert "stale tables: main, union (run" in capsys.readouterr().out
    assert tables.main(_args(readme, results), tables=SPECS) == 0
    assert "| 20000 | f64 | 0.012 /s | 3.5 | 0.00353 |" in readme.read_text()
    assert tables.main(_args(readme, results, "--check"), tables=SPECS) == 0


def test_missing_json_leaves_the_table(tree, capsys):
    readme, results = tree
    (results / "a.json").unlink()
    assert tables.main(_args(readme, results), tables=SPECS) == 0
    text = readme.read_text()
    assert _block(text, "missing") == "| kept | as | it | is |\n"
    assert _block(text, "main") == "| old | stuff |\n"  # one of its two files is gone
    out = capsys.readouterr().out
    assert "table main:" in out and "a.json is missing; left as it is" in out
    # nothing to render is not stale
    assert tables.main(_args(readme, results, "--check"), tables=SPECS) == 0


def test_out_writes_a_copy(tree):
    readme, results = tree
    copy = results / "README.md"
    assert tables.main(_args(readme, results, "--out", str(copy)), tables=SPECS) == 0
    assert readme.read_text() == README
    assert _block(copy.read_text(), "main").startswith("Source: `a.json` (run")  # relative to it


def test_bad_specs_and_markers(tree, capsys):
    readme, results = tree
    readme.write_text(README + "\n<!-- table: nosuch -->\n<!-- /table -->\n")
    assert tables.main(_args(readme, results), tables=SPECS) == 2
    assert "no table spec named 'nosuch'" in capsys.readouterr().err
    readme.write_text(README + "\n<!-- table: main -->\n")
    with pytest.raises(ValueError, match="unbalanced"):
        tables.render_text(readme.read_text(), results, readme.parent, SPECS)
    wrong = {"main": T(sources={"a": S("a.json", "rows")}, cols=(C("x", "no/such/path"),))}
    with pytest.raises(ValueError, match="column 'x' is empty in every row"):
        tables.render_text(README.split("Middle")[0], results, readme.parent, wrong)


def test_readme_tables_are_what_the_stored_json_renders(capsys):
    """benchmarks/README.md as committed: every marked table names a spec and equals what
    benchmarks/results renders (after a benchmark run: `make bench-tables`)."""
    names = re.findall(r"^<!-- table: (\S+) -->$", (BENCH / "README.md").read_text(), re.M)
    assert names and set(names) <= set(tables.TABLES)
    code = tables.main(["--check", "--readme", str(BENCH / "README.md")])
    assert code == 0, capsys.readouterr().out


# ----------------------------------------------------------------------------- run_all


def _dry(*argv) -> list[list[str]]:
    return [shlex.split(line) for line in _capture(run_all.main, ["--dry-run", *argv])]


def _capture(fn, argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert fn(argv) == 0
    return buf.getvalue().splitlines()


def test_dry_run_commands_and_tag():
    cmds = _dry("--platform", "cpu", "--tag", "cpu7", "--only", "online,pde_1thread,step")
    py = sys.executable
    assert cmds == [
        [py, "benchmarks/bench_step.py", "--out", "benchmarks/results/bench_step_cpu7.json"],
        [py, "benchmarks/bench_online.py", "--steps", "40000", "--rounds", "7",
         "--out", "benchmarks/results/bench_online_cpu7.json"],
        [py, "benchmarks/bench_pde.py", "--single-thread",
         "--out", "benchmarks/results/bench_pde_cpu7_1thread.json"],
    ]  # fmt: skip
    # without --tag, a CPU machine is cpu<os.cpu_count()>
    import os

    (cmd,) = _dry("--platform", "cpu", "--only", "startup")
    assert cmd[-1] == f"benchmarks/results/bench_startup_cpu{os.cpu_count()}.json"


def test_dry_run_every_job_once_in_order_and_skip():
    cmds = _dry("--platform", "cpu", "--tag", "x")
    assert [Path(c[1]).name for c in cmds] == [j.script for j in run_all.JOBS]
    outs = [c[-1] for c in cmds]
    assert len(set(outs)) == len(outs) == len(run_all.JOBS) >= 16
    assert "benchmarks/bench_sinkhorn.py" in [c[1] for c in cmds]
    skipped = _dry("--platform", "cpu", "--tag", "x", "--skip", "sinkhorn,step")
    assert [c[1] for c in skipped] == [c[1] for c in cmds[1:-1]]


def test_dry_run_quick_options_and_out_dir(tmp_path):
    cmds = _dry("--platform", "cpu", "--tag", "q", "--quick", "--out-dir", str(tmp_path))
    by_name = dict(zip([j.name for j in run_all.JOBS], cmds, strict=True))
    for name in ("transport", "adaptive", "pde", "sinkhorn", "sweep", "sweep_chaos"):
        assert "--quick" in by_name[name], name  # the script's own quick option
    assert by_name["step"][2:-2] == shlex.split(run_all.JOBS[0].quick)
    assert all(Path(c[-1]).parent == tmp_path for c in cmds)
    # --quick without --out-dir never writes into benchmarks/results
    (cmd,) = _dry("--platform", "cpu", "--tag", "q", "--quick", "--only", "online")
    assert "benchmarks/results" not in cmd[-1] and "mfnn-bench-quick-" in cmd[-1]


def test_dry_run_gpu_options():
    cmds = _dry("--platform", "gpu", "--tag", "h100", "--only", "step,pde,sharding")
    assert cmds[0][2:] == ["--steps", "2000", "--no-startup", "--out",
                           "benchmarks/results/bench_step_h100.json"]  # fmt: skip
    assert cmds[1][2:] == ["--out", "benchmarks/results/bench_pde_h100.json"]  # no GPU options
    assert cmds[2][2:6] == ["--platform", "gpu", "--counts", "1"]


@pytest.mark.parametrize(
    ("kind", "tag"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-40GB", "a100"),
        ("Tesla V100-SXM2-16GB", "v100"),
        ("NVIDIA L4", "l4"),
        ("Some Accelerator", "gpu"),
    ],
)
def test_machine_tag(kind, tag):
    assert run_all.machine_tag(run_all.Machine("gpu", kind, 1)) == tag
    assert run_all.machine_tag(run_all.Machine("cpu"), cpu_count=2) == "cpu2"


def test_unknown_job_name_is_refused():
    with pytest.raises(SystemExit, match="--only: unknown nope"):
        run_all.main(["--dry-run", "--platform", "cpu", "--only", "nope,step"])


def test_every_option_exists_in_its_script():
    """Each flag a job passes is one its script's argparse declares (read from its source)."""
    for job in run_all.JOBS:
        source = (BENCH / job.script).read_text()
        declared = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source))
        used = {"--out"} | {
            w for opts in (job.args, job.gpu_args or "", job.quick) for w in opts.split()
            if w.startswith("--")
        }  # fmt: skip
        assert used <= declared, (job.name, used - declared)


def test_runs_each_script_and_reports_a_failure(tmp_path, monkeypatch):
    """Stand-in scripts: one fails, one exits cleanly without a result, one writes its
    JSON. All run; the exit code is 1; the result is stamped; the log lists each."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    writer = "import json, sys; out = sys.argv[sys.argv.index('--out') + 1]; "
    (scripts / "bad.py").write_text("import sys; print('bad ran'); sys.exit(3)\n")
    (scripts / "lazy.py").write_text("print('lazy ran')\n")
    dump = "json.dump({'x': 1, 'args': sys.argv[1:]}, open(out, 'w'))\n"
    (scripts / "ok.py").write_text(writer + dump)
    jobs = (
        run_all.Job("bad", "bad.py"),
        run_all.Job("lazy", "lazy.py"),
        run_all.Job("ok", "ok.py", args="--flag 2", out="{stem}_r_{tag}.json"),
    )
    monkeypatch.setattr(run_all, "JOBS", jobs)
    monkeypatch.setattr(run_all, "HERE", scripts)
    out_dir = tmp_path / "out"
    code = run_all.main(["--platform", "cpu", "--tag", "t9", "--out-dir", str(out_dir),
                         "--no-tables"])  # fmt: skip
    assert code == 1
    doc = json.loads((out_dir / "ok_r_t9.json").read_text())
    assert doc["x"] == 1 and doc["args"] == ["--flag", "2", "--out", str(out_dir / "ok_r_t9.json")]
    stamp = doc["_run_all"]
    assert stamp["exit_code"] == 0 and stamp["tag"] == "t9" and stamp["wall_s"] >= 0
    assert stamp["command"][-4:] == ["--flag", "2", "--out", str(out_dir / "ok_r_t9.json")]
    logs = out_dir / "logs"
    assert (logs / "bad.log").read_text().splitlines()[1] == "bad ran"
    summary = (logs / "run_all.log").read_text().splitlines()[1:]
    assert [line.split()[:3] for line in summary] == [
        ["bad", "exit", "3"], ["lazy", "exit", "-1"], ["ok", "exit", "0"],
    ]  # fmt: skip
    assert not (out_dir / "bad_t9.json").exists()
