"""``accsim advise`` / :mod:`accsim.experiments.advisor`."""

import csv
import json

import pytest

from accsim.cli import main
from accsim.experiments import advisor

TRACE = "digits-mlp-relu"
GRID = ["--rule", "point", "--narrow", "fp8_e5m2", "--structures", "sequential,chunked:8",
        "--policies", "uniform-narrow,absolute,uniform-wide", "--fractions", "0.2",
        "--limit", "80"]


@pytest.fixture(scope="module")
def advice():
    return advisor.advise(TRACE, "fp16-fp16acc", 0.98, narrow=["fp8_e5m2"],
                          structures=["sequential", "chunked:8"],
                          policies=["uniform-narrow", "absolute", "uniform-wide"],
                          fractions=[0.2], limit=80, rule="point")


def test_candidates_and_choice(advice):
    rows = advice["candidates"]
    assert len(rows) == 2 * 3
    assert advice["calibration"] == [0, 40] and advice["held_out"] == [40, 80]
    for r in rows:
        assert r["n_samples"] == 40
        assert r["meets"] == (r["agreement"] >= 0.98)
    ok = [r for r in rows if r["meets"]]
    cheapest = min(r["energy_per_inference_pj"] for r in ok)
    assert advice["chosen"]["energy_per_inference_pj"] == cheapest
    assert advice["held_out_result"]["n_samples"] == 40


def test_wilson_rule_is_stricter():
    d = advisor.advise(TRACE, "fp16-fp16acc", 0.97, narrow=["fp8_e5m2"],
                       policies=["uniform-narrow", "uniform-wide"], limit=80, rule="wilson")
    for r in d["candidates"]:
        assert r["meets"] == (r["agreement_ci95"][0] >= 0.97)
    # 40 of 40 agreeing has a Wilson lower end of 0.912: nothing can meet 0.97
    assert d["chosen"] is None and d["held_out_result"] is None
    with pytest.raises(ValueError, match="rule"):
        advisor.advise(TRACE, "fp16-fp16acc", 0.97, rule="x")


def test_the_all_wide_array_is_always_a_candidate():
    """Without uniform-wide among the policies the all-wide array is added (baseline);
    when every narrow candidate misses the target it is the answer."""
    d = advisor.advise(TRACE, "fp16-fp16acc", 0.999, narrow=["fp8_e5m2"],
                       policies=["uniform-narrow"], limit=80, rule="point")
    rows = d["candidates"]
    assert [r["baseline"] for r in rows].count(True) == 1
    base = next(r for r in rows if r["baseline"])
    assert base["policy"] == "uniform-wide" and base["recomputed_fraction"] == 1.0
    narrow = next(r for r in rows if not r["baseline"])
    assert narrow["energy_per_inference_pj"] < base["energy_per_inference_pj"]
    if not narrow["meets"]:
        assert d["chosen"]["baseline"]
    ok = [r for r in rows if r["meets"]]
    assert d["chosen"] == min(ok, key=lambda r: r["energy_per_inference_pj"])


def test_pareto_brute_force(advice):
    rows = advice["candidates"]
    for r in rows:
        dominated = any(o is not r and o["energy_per_inference_pj"] <= r["energy_per_inference_pj"]
                        and o["agreement"] >= r["agreement"]
                        and (o["energy_per_inference_pj"], o["agreement"])
                        != (r["energy_per_inference_pj"], r["agreement"]) for o in rows)
        assert r["pareto"] == (not dominated)


def test_cli_json_csv_plot(tmp_path, capsys):
    c, png = tmp_path / "a.csv", tmp_path / "a.png"
    rc = main(["advise", TRACE, "--target-agreement", "0.98", *GRID, "--json",
               "--csv", str(c), "--plot", str(png)])
    d = json.loads(capsys.readouterr().out)
    assert rc == (0 if d["chosen"] and d["held_out_result"]["meets"] else 1)
    with open(c) as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [r["id"] for r in d["candidates"]]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_text(capsys):
    main(["advise", TRACE, "--target-agreement", "0.98", *GRID, "-q"])
    out = capsys.readouterr().out
    assert "pareto" in out and ("chosen:" in out or "no candidate meets" in out)


def test_unreachable_target_exit_1(capsys):
    # e5m2 stagnates on the 784-long sums of mnist-mlp-relu: all narrow agrees ~0.93
    rc = main(["advise", "mnist-mlp-relu", "--target-agreement", "1", "--narrow",
               "fp8_e5m2", "--policies", "uniform-narrow", "--limit", "100", "-q"])
    assert rc == 1
    assert "no candidate meets" in capsys.readouterr().out


@pytest.mark.parametrize("argv, where", [
    (["--structures", "chunked:x"], "--structures"),
    (["--target-agreement", "1.5"], "--target-agreement"),
    (["--policies", "nope"], "--policies"),
    (["--policies", "absolute", "--fractions", ""], "--policies"),
    (["--calibration", "500", "--limit", "100"], "--calibration"),
    (["--narrow", "e9m99"], "narrow"),
])
def test_cli_errors(argv, where, capsys):
    base = ["advise", TRACE, "-q"]
    if "--target-agreement" not in argv:
        base += ["--target-agreement", "0.9"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0]


@pytest.mark.slow
def test_processes_scheduler_same_metrics(advice):
    d = advisor.advise(TRACE, "fp16-fp16acc", 0.98, narrow=["fp8_e5m2"],
                       structures=["sequential", "chunked:8"],
                       policies=["uniform-narrow", "absolute", "uniform-wide"],
                       fractions=[0.2], limit=80, scheduler="processes", workers=2,
                       rule="point")
    key = lambda r: r["id"]  # noqa: E731
    for a, b in zip(sorted(d["candidates"], key=key), sorted(advice["candidates"], key=key)):
        assert a["agreement"] == b["agreement"]
        assert a["energy_per_inference_pj"] == b["energy_per_inference_pj"]
