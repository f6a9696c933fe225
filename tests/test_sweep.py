"""Sweeps: spec validation and expansion, executors agree, resume after SIGKILL / torn
lines, one-line errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accsim.cli import main
from accsim.experiments.sweep import load_spec, point_id, read_results, run_sweep
from accsim.network.simulation import simulate

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
kind: sweep
version: 1
grid:
  traces: [digits-mlp-relu]
  accelerators: [fp16-fp32acc]
  narrow: [e5m5]
  policies: [uniform-narrow, condition, random]
  taus: [0.3, 1.0]
limit: 60
"""


def _write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _by_id(folder):
    recs = read_results(Path(folder) / "results.jsonl")
    return {r["id"]: r for r in recs}


# ---------------------------------------------------------------------------------------
# spec expansion
# ---------------------------------------------------------------------------------------
def test_expansion_counts_and_ids(tmp_path):
    spec = _write(tmp_path, """\
kind: sweep
version: 1
grid:
  traces: [digits-mlp-relu]
  accelerators: [fp16-fp32acc, bf16-fp32acc]
  narrow: [e5m5, e5m7]
  policies:
    - uniform-narrow
    - uniform-wide
    - condition
    - {name: random, fractions: [0.1, 0.2, 0.3], taus: [0.5]}
  taus: [0.1, 1.0]
  fractions: [0.05]
  estimators: [exact, norm]
  seeds: [0, 1]
limit: 10
""")
    s = load_spec(spec)
    # per (accelerator, narrow): uniform-narrow 1 + uniform-wide 1 + condition (2 taus +
    # 1 fraction) x 2 estimators + random (3 fractions + 1 tau x 2 estimators); x 2 seeds
    per = (1 + 1 + 3 * 2 + (3 + 1 * 2)) * 2
    assert len(s.points) == 2 * 2 * per
    ids = [p.id for p in s.points]
    assert len(set(ids)) == len(ids)
    for p in s.points:
        assert p.id == point_id(p.params)
        if p.params["policy"] in ("uniform-narrow", "uniform-wide"):
            assert p.params["tau"] is None and p.params["fraction"] is None
            assert p.params["estimator"] is None
        if p.params["policy"] == "random" and p.params["fraction"] is not None:
            assert p.params["estimator"] is None
            assert p.params["fraction"] in (0.1, 0.2, 0.3)
    # the id depends on the parameters only: key order in the spec does not matter
    again = load_spec(_write(tmp_path, spec.read_text().replace(
        "limit: 10", "limit: 10\ntechnology: horowitz-45nm"), "again.yaml"))
    assert [p.id for p in again.points] == ids


def test_policies_needing_a_budget_get_only_accepted_budgets(tmp_path):
    from accsim.precision.scheduler import POLICIES
    spec = _write(tmp_path, SMALL.replace("taus: [0.3, 1.0]", "fractions: [0.25]"))
    s = load_spec(spec)
    pts = {(p.params["policy"], p.params["tau"], p.params["fraction"]) for p in s.points}
    assert pts == {("uniform-narrow", None, None), ("condition", None, 0.25),
                   ("random", None, 0.25)}
    assert all(p.params["policy"] in POLICIES for p in s.points)


def test_policy_entry_budgets_replace_the_grid_budgets(tmp_path):
    spec = _write(tmp_path, SMALL.replace(
        "policies: [uniform-narrow, condition, random]",
        "policies: [condition, {name: random, taus: [], fractions: [0.2]}]"))
    pts = {(p.params["policy"], p.params["tau"], p.params["fraction"])
           for p in load_spec(spec).points}
    assert pts == {("condition", 0.3, None), ("condition", 1.0, None),
                   ("random", None, 0.2)}


@pytest.mark.parametrize("edit, key", [
    (("  taus: [0.3, 1.0]", "  tau: [0.3, 1.0]"), "grid.tau"),                  # unknown key
    (("limit: 60", "limt: 60"), "'limt'"),                                      # typo top level
    (("traces: [digits-mlp-relu]", "traces: []"), "grid.traces"),               # empty grid
    (("policies: [uniform-narrow, condition, random]", "policies: []"), "grid.policies"),
    (("traces: [digits-mlp-relu]", "traces: [no-such-trace]"), "grid.traces[0]"),
    (("narrow: [e5m5]", "narrow: [e5m5, e5m99q]"), "grid.narrow[1]"),           # bad format
    (("accelerators: [fp16-fp32acc]", "accelerators: [nope]"), "grid.accelerators[0]"),
    (("random]", "randon]"), "grid.policies[2]"),                              # bad policy
    (("kind: sweep", "kind: sweeps"), "'kind'"),
    (("version: 1", "version: 2"), "'version'"),
    (("taus: [0.3, 1.0]", "taus: [0.3, .nan]"), "grid.taus[1]"),
    (("limit: 60", "limit: 0"), "'limit'"),
    (("limit: 60", "limit: 60\ntechnology: tsmc-1nm"), "'technology'"),
    (("policies: [uniform-narrow, condition, random]", "policies: [condition]\n  fractions: []"),
     "grid.fractions"),
    (("limit: 60", "limit: 60\noptions: {batch_sise: 8}"), "options.batch_sise"),
])
def test_malformed_spec_fails_before_any_work(tmp_path, capsys, edit, key):
    text = SMALL.replace(*edit)
    assert text != SMALL
    spec = _write(tmp_path, text)
    out = tmp_path / "out"
    rc = main(["sweep", str(spec), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("accsim: error: ") and str(spec) in lines[0]
    assert key in lines[0], lines[0]
    assert not out.exists()


def test_missing_spec_file_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "nope.yaml"), "--out", str(out)]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    spec = _write(tmp_path, SMALL)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--out", str(out), "--scheduler", "threads"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("scheduler", ["dask-local", "tcp://127.0.0.1:8786"])
def test_dask_schedulers_without_dask_say_what_to_install(tmp_path, capsys, monkeypatch,
                                                          scheduler):
    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed fails
    spec = _write(tmp_path, SMALL)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--scheduler", scheduler]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'accsim[dask]'" in err[0]
    assert not out.exists()


def test_unreachable_scheduler_address_fails_fast(tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    spec = _write(tmp_path, SMALL)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = main(["sweep", str(spec), "--out", str(out), "--scheduler",
               f"tcp://127.0.0.1:{port}"])
    dt = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"tcp://127.0.0.1:{port}" in err[0] and "cannot reach" in err[0]
    assert dt < 10
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------
def test_executors_give_identical_metrics(tmp_path):
    spec = load_spec(_write(tmp_path, SMALL))
    ids = {p.id for p in spec.points}
    results = {}
    for sched in ("inprocess", "processes", "dask-local"):
        out = tmp_path / sched
        summary = run_sweep(spec, out, scheduler=sched, workers=2)
        assert summary.ran == len(ids) and summary.skipped == 0
        recs = _by_id(out)
        assert set(recs) == ids
        results[sched] = {i: r["metrics"] for i, r in recs.items()}
        for r in recs.values():
            assert r["params"] == next(p.params for p in spec.points if p.id == r["id"])
            assert r["seconds"] > 0 and r["accsim_version"]
    assert results["processes"] == results["inprocess"]
    assert results["dask-local"] == results["inprocess"]
    m = next(iter(results["inprocess"].values()))
    for k in ("accuracy", "reference_accuracy", "agreement", "recomputed_fraction",
              "bound_violations", "energy_pj", "baseline_energy_pj", "energy_savings",
              "area_um2", "cycles", "n_samples", "narrow", "wide", "layers"):
        assert k in m
    assert m["n_samples"] == 60 and m["narrow"] == "e5m5"
    assert {"name", "recomputed_fraction", "bound_violations", "energy_pj"} <= set(
        m["layers"][0])
    # the spec is kept next to the results
    assert (tmp_path / "inprocess" / "spec.yaml").read_text() == SMALL
    # and the report reads what the sweep wrote
    assert main(["report", str(tmp_path / "inprocess")]) == 0
    md = (tmp_path / "inprocess" / "report.md").read_text()
    assert all(f"`{i}`" in md for i in ids)
    assert (tmp_path / "inprocess" / "energy_digits-mlp-relu.png").is_file()


def test_policies_behave_in_the_metrics(tmp_path):
    spec = load_spec(_write(tmp_path, SMALL))
    run_sweep(spec, tmp_path / "o")
    recs = list(_by_id(tmp_path / "o").values())
    by = {(r["params"]["policy"], r["params"]["tau"]): r["metrics"] for r in recs}
    assert by[("uniform-narrow", None)]["recomputed_fraction"] == 0
    # a smaller tau re-issues at least as much; random takes about condition's budget
    assert by[("condition", 0.3)]["recomputed_fraction"] >= \
        by[("condition", 1.0)]["recomputed_fraction"] > 0
    for t in (0.3, 1.0):
        assert by[("random", t)]["recomputed_fraction"] == pytest.approx(
            by[("condition", t)]["recomputed_fraction"], rel=0.05)
    e = by[("uniform-narrow", None)]
    assert e["energy_pj"] < e["baseline_energy_pj"]
    assert e["energy_per_sample_pj"] == pytest.approx(e["energy_pj"] / 60)
    # the policy-judging metrics of simulate --json are in every point (issue 17)
    lo, hi = e["agreement_ci95"]
    assert 0 <= lo <= e["agreement"] <= hi <= 1
    direct = simulate("digits-mlp-relu", "fp16-fp32acc", narrow="e5m5", limit=60)
    assert direct.normwise_error > 0
    assert e["normwise_error"] == pytest.approx(direct.normwise_error, rel=1e-12)
    assert e["agreement_ci95"] == pytest.approx(list(direct.agreement_ci95))
    assert all(la["stagnation_ku"] > 0 for la in e["layers"])


def _worker_environment(run):
    """Runs in a sweep worker: what numba and the BLAS see there."""
    import numba
    keys = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    return ({k: os.environ.get(k) for k in keys}, numba.config.NUMBA_NUM_THREADS,
            numba.get_num_threads(), os.getpid()), 0.0


@pytest.mark.slow
def test_sweep_on_a_running_dask_scheduler(tmp_path, capsys):
    """The tcp://host:port path: a cluster started elsewhere, reached by its address."""
    import logging

    import distributed
    spec = _write(tmp_path, SMALL)
    run_sweep(load_spec(spec), tmp_path / "ref")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR,
                                  env={"NUMBA_NUM_THREADS": "1"}) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        rc = main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--scheduler",
                   cluster.scheduler_address])
    assert rc == 0, capsys.readouterr().err
    ref = {i: r["metrics"] for i, r in _by_id(tmp_path / "ref").items()}
    got = {i: r["metrics"] for i, r in _by_id(tmp_path / "o").items()}
    assert got == ref


def test_workers_run_one_numba_thread(tmp_path):
    from accsim.experiments.executors import iter_dask, iter_processes
    spec = load_spec(_write(tmp_path, SMALL))
    one = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    before = {k: os.environ.get(k) for k in one}
    for it in (iter_processes, iter_dask):
        outs = [out for _, (out, _) in it(spec.points, 2, fn=_worker_environment)]
        assert len(outs) == len(spec.points)
        for env, configured, running, pid in outs:
            assert env == one and configured == 1 and running == 1
            assert pid != os.getpid()
    # the parent's environment is left as it was
    assert {k: os.environ.get(k) for k in one} == before


# ---------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------
def test_rerun_skips_finished_points(tmp_path):
    spec = load_spec(_write(tmp_path, SMALL))
    out = tmp_path / "o"
    first = run_sweep(spec, out)
    text = (out / "results.jsonl").read_bytes()
    second = run_sweep(spec, out)
    assert (first.ran, second.ran, second.skipped) == (5, 0, 5)
    assert (out / "results.jsonl").read_bytes() == text


def test_torn_last_line_is_cut_and_the_point_rerun(tmp_path):
    spec = load_spec(_write(tmp_path, SMALL))
    out = tmp_path / "o"
    run_sweep(spec, out)
    path = out / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    # keep two complete records and half of the third (a writer killed mid-line)
    path.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert len(read_results(path)) == 2
    s = run_sweep(spec, out)
    assert (s.skipped, s.ran) == (2, 3)
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    recs = [json.loads(x) for x in raw.splitlines()]
    assert sorted(r["id"] for r in recs) == sorted(p.id for p in spec.points)


def test_complete_json_without_newline_counts_as_torn(tmp_path):
    path = tmp_path / "results.jsonl"
    rec = {"id": "a", "params": {}, "metrics": {}}
    path.write_text(json.dumps(rec) + "\n" + json.dumps(dict(rec, id="b")))
    assert [r["id"] for r in read_results(path, repair=True)] == ["a"]
    assert path.read_text() == json.dumps(rec) + "\n"


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    spec = load_spec(_write(tmp_path, SMALL))
    out = tmp_path / "o"
    out.mkdir()
    good = json.dumps({"id": "x", "params": {}, "metrics": {}})
    (out / "results.jsonl").write_text(good + "\n{not json\n" + good + "\n")
    with pytest.raises(ValueError, match=r"results\.jsonl: line 2"):
        run_sweep(spec, out)


def test_a_second_sweep_into_a_busy_folder_is_refused(tmp_path):
    from accsim.experiments.results import ResultsWriter
    spec = load_spec(_write(tmp_path, SMALL))
    out = tmp_path / "o"
    out.mkdir()
    busy = ResultsWriter(out / "results.jsonl")     # what a running sweep holds
    try:
        with pytest.raises(ValueError, match="in use by another running sweep"):
            run_sweep(spec, out)
    finally:
        busy.close()
    assert run_sweep(spec, out).ran == len(spec.points)


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tmp_path):
    """Kill -9 the sweep process once it has finished a point; the rerun completes the
    grid with every point present exactly once."""
    spec_text = SMALL.replace("narrow: [e5m5]", "narrow: [e5m3, e5m4, e5m5, e5m7]").replace(
        "taus: [0.3, 1.0]", "taus: [0.1, 0.3, 1.0]").replace("limit: 60", "limit: 300")
    spec = _write(tmp_path, spec_text)
    total = len(load_spec(spec).points)
    assert total == 28
    out = tmp_path / "o"
    path = out / "results.jsonl"
    cmd = [sys.executable, "-m", "accsim", "sweep", str(spec), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300   # a cold numba cache compiles first
        while time.monotonic() < deadline:
            if path.exists() and path.read_bytes().count(b"\n") >= 1:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it was killed"
    done_at_kill = path.read_bytes().count(b"\n")
    assert 1 <= done_at_kill < total
    rerun = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_at_kill} already in" in rerun.stderr
    lines = path.read_bytes().splitlines()
    recs = [json.loads(x) for x in lines]
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {p.id for p in load_spec(spec).points}
