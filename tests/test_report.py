"""accsim report: Markdown, PNG plots, Pareto points (checked independently)."""

import json
import shutil

import pytest

from accsim.cli import main
from accsim.experiments.report import load_results, pareto
from accsim.experiments.sweep import load_spec

SPEC = """\
kind: sweep
version: 1
grid:
  traces: [digits-mlp-relu]
  accelerators: [fp16-fp32acc]
  narrow: [e5m3, e5m5]
  policies: [uniform-narrow, uniform-wide, condition, random]
  taus: [0.3, 1.0]
limit: 100
"""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fake_metrics(params, layers):
    """Plausible metrics in the schema of accsim.experiments.sweep.point_metrics (real sweeps feed the
    report in tests/test_sweep.py): more mantissa bits and more re-issued outputs agree
    better and cost more."""
    pol, tau, frac = params["policy"], params["tau"], params["fraction"]
    bits = int(params["narrow"].split("m")[1])
    f = {"uniform-narrow": 0.0, "uniform-wide": 1.0}.get(pol)
    if f is None:
        f = min(1.0, 0.05 / tau) if tau is not None else frac
    quality = 1 - 0.01 * (6 - bits) * (1 - f) * (1.0 if pol != "random" else 1.5)
    energy = 10_000.0 * (1 + 0.1 * bits) + 60_000.0 * f + (12_000.0 if pol == "condition"
                                                         else 0.0)
    baseline = 35_000.0
    return {
        "accuracy": round(0.97 * quality, 4), "reference_accuracy": 0.97,
        "agreement": round(quality, 4), "recomputed_fraction": f, "bound_violations": 0,
        "energy_pj": energy * 100, "baseline_energy_pj": baseline * 100,
        "energy_per_sample_pj": energy, "baseline_energy_per_sample_pj": baseline,
        "energy_savings": 1 - energy / baseline, "area_um2": 1e6, "cycles": 1000,
        "n_samples": 100, "narrow": params["narrow"], "wide": "fp32",
        "events": {"overflows": 0, "saturations": 0, "inexact": 10},
        "layers": [{"name": n, "recomputed_fraction": f * (1 + i) / len(layers),
                    "bound_violations": 0, "energy_pj": energy * 50,
                    "events": {"overflows": 0, "saturations": 0, "inexact": 5}}
                   for i, n in enumerate(layers)],
    }


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A results.jsonl of the points of SPEC (real ids and params, made-up metrics: no
    simulation, so the report tests do not wait on numba)."""
    d = tmp_path_factory.mktemp("report")
    spec = d / "spec.yaml"
    spec.write_text(SPEC)
    run = d / "run"
    run.mkdir()
    with open(run / "results.jsonl", "w") as fh:
        for p in load_spec(spec).points:
            rec = {"id": p.id, "params": p.params, "accsim_version": "0.1.0",
                   "metrics": _fake_metrics(p.params, ["linear0", "linear2"]),
                   "seconds": 0.1}
            fh.write(json.dumps(rec) + "\n")
    assert len(load_results(run)) == 12
    return run


def _copy(src, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def test_report_writes_markdown_and_valid_pngs(sweep_dir, tmp_path, capsys):
    import matplotlib.image as mpimg
    d = _copy(sweep_dir, tmp_path)
    assert main(["report", str(d)]) == 0
    printed = capsys.readouterr().out.split()
    md = d / "report.md"
    assert str(md) in printed
    text = md.read_text()
    for heading in ("## digits-mlp-relu", "### Per policy", "### Best points",
                    "### Pareto points", "### All points"):
        assert heading in text
    pngs = sorted(d.glob("*.png"))
    assert {p.name for p in pngs} == {"energy_digits-mlp-relu.png",
                                      "tau_digits-mlp-relu.png",
                                      "layers_digits-mlp-relu.png"}
    for p in pngs:
        assert str(p) in printed
        assert f"]({p.name})" in text
        assert p.read_bytes()[:8] == PNG_MAGIC
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert img.std() > 0.01          # not a blank canvas
    # every point appears in the all-points table
    for r in load_results(d):
        assert f"`{r['id']}`" in text
    # nothing half-written left behind
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_report_out_folder(sweep_dir, tmp_path):
    d = _copy(sweep_dir, tmp_path)
    out = tmp_path / "elsewhere"
    assert main(["report", str(d), "--out", str(out)]) == 0
    assert (out / "report.md").is_file() and len(list(out.glob("*.png"))) == 3
    assert not (d / "report.md").exists()


def _dominates(a, b):
    return (a["energy_per_sample_pj"] <= b["energy_per_sample_pj"]
            and a["agreement"] >= b["agreement"]
            and (a["energy_per_sample_pj"] < b["energy_per_sample_pj"]
                 or a["agreement"] > b["agreement"]))


def test_report_json_pareto_points_are_non_dominated(sweep_dir, tmp_path, capsys):
    d = _copy(sweep_dir, tmp_path)
    assert main(["report", str(d), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    doc = json.loads(out)
    assert not (d / "report.md").exists()       # --json writes no files
    recs = load_results(d)
    allpts = [{"id": r["id"], "agreement": r["metrics"]["agreement"],
               "energy_per_sample_pj": r["metrics"]["energy_per_sample_pj"],
               "policy": r["params"]["policy"]} for r in recs]
    front = doc["pareto"]["digits-mlp-relu"]
    assert front
    ids = {p["id"] for p in front}
    for p in front:
        assert not any(_dominates(q, p) for q in allpts), p["id"]
    # and complete: every other point is dominated by some point of the front
    for q in allpts:
        if q["id"] not in ids:
            assert any(_dominates(p, q) for p in front), q["id"]
    # per policy: the same within each policy
    by_pol = doc["pareto_by_policy"]["digits-mlp-relu"]
    assert set(by_pol) == {"uniform-narrow", "uniform-wide", "condition", "random"}
    for pol, pts in by_pol.items():
        mine = [q for q in allpts if q["policy"] == pol]
        for p in pts:
            assert not any(_dominates(q, p) for q in mine)
        pids = {p["id"] for p in pts}
        for q in mine:
            if q["id"] not in pids:
                assert any(_dominates(p, q) for p in pts)
    # sorted by energy along the front, agreement rising (equal only for exact ties)
    es = [p["energy_per_sample_pj"] for p in front]
    ag = [p["agreement"] for p in front]
    assert es == sorted(es)
    for i in range(1, len(front)):
        assert ag[i] > ag[i - 1] or (ag[i] == ag[i - 1] and es[i] == es[i - 1])


def _rec(i, e, a):
    return {"id": str(i), "params": {"trace": "t", "policy": "p"},
            "metrics": {"energy_per_sample_pj": e, "agreement": a}}


def test_pareto_unit():
    recs = [_rec(0, 1.0, 0.5), _rec(1, 2.0, 0.5), _rec(2, 2.0, 0.9), _rec(3, 3.0, 0.9),
            _rec(4, 4.0, 1.0), _rec(5, 4.0, 1.0), _rec(6, 0.5, None)]
    assert [r["id"] for r in pareto(recs)] == ["0", "2", "4", "5"]


def test_report_errors(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["report", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.jsonl" in err[0] and "not found" in err[0]
    (empty / "results.jsonl").write_text("")
    assert main(["report", str(empty)]) == 2
    assert "no finished points" in capsys.readouterr().err
    good = json.dumps(_rec(1, 1.0, 1.0))
    (empty / "results.jsonl").write_text(good + "\n[oops\n" + good + "\n")
    assert main(["report", str(empty), "--json"]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not list(empty.glob("*.png"))


def test_report_ignores_a_torn_last_line(sweep_dir, tmp_path, capsys):
    d = _copy(sweep_dir, tmp_path)
    with open(d / "results.jsonl", "ab") as fh:
        fh.write(b'{"id": "half-writ')
    assert main(["report", str(d), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["points"] == 12


def test_report_csv_every_point(sweep_dir, tmp_path, capsys):
    import csv

    d = _copy(sweep_dir, tmp_path)
    path = tmp_path / "points.csv"
    assert main(["report", str(d), "--json", "--csv", str(path)]) == 0
    front = {p["id"] for p in json.loads(capsys.readouterr().out)["pareto"]["digits-mlp-relu"]}
    rows = list(csv.DictReader(path.read_text().splitlines()))
    recs = {r["id"]: r for r in load_results(d)}
    assert sorted(r["id"] for r in rows) == sorted(recs)
    for row in rows:
        rec = recs[row["id"]]
        assert row["policy"] == rec["params"]["policy"]
        assert row["tau"] == ("" if rec["params"]["tau"] is None else repr(rec["params"]["tau"]))
        assert float(row["agreement"]) == rec["metrics"]["agreement"]
        assert float(row["energy_per_sample_pj"]) == rec["metrics"]["energy_per_sample_pj"]
        assert int(row["inexact"]) == rec["metrics"]["events"]["inexact"]
        assert row["pareto"] == ("1" if row["id"] in front else "0")
    assert main(["report", str(d), "--csv", str(tmp_path / "none" / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("accsim: error: --csv") and err.count("\n") == 1
