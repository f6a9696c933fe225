"""Costs a user can read: promotion-adder location, estimator and re-fetch pricing,
accumulator / whole-MAC / with-memory views, break-even per estimator, per-inference
keys. Expected values are worked out by hand from the Horowitz 45 nm anchors
(formats/technology/horowitz-45nm.yaml), not from the code under test."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

import accsim
from accsim.experiments.report import pareto_json
from accsim.experiments.sweep import point_metrics
from accsim.hardware.accelerator import load_accelerator
from accsim.hardware.cost import (array_area, assumptions, break_even_table, mac_cost,
                                  price_run, price_simulation, priced_estimator,
                                  promotion_adders, run_break_even, sram_bits)
from accsim.network.simulation import simulate
from test_cost import one_line_error, run

H45 = "horowitz-45nm"
REG = 0.009, 5.98            # register_bit: pJ per write, um2 per bit
FP16_MUL, FP16_ADD, FP32_ADD = (1.1, 1640), (0.4, 1360), (0.9, 4184)


ACC_YAML = """\
kind: accelerator
version: 1
name: chunky
operands: {input: fp16, weight: fp16}
narrow: {format: fp16}
wide: {format: fp32}
structure: {kind: chunked, chunk_size: 3, promotion: PROMO}
array: {rows: 4, cols: 8, dataflow: os, clock_ghz: 1}
"""


def _acc(tmp_path, promo="per-pe", extra=""):
    p = tmp_path / f"chunky-{promo}.yaml"
    p.write_text(ACC_YAML.replace("PROMO", promo) + extra)
    return p


# ---- item 2: where the promotion adder lives ------------------------------------------
@pytest.mark.parametrize("promo, adders", [("per-pe", 32), ("per-row", 4 * 3),
                                           ("per-column", 8 * 2), ("outside", 11)])
def test_promotion_location_area_and_energy_by_hand(tmp_path, promo, adders):
    acc = load_accelerator(_acc(tmp_path, promo))
    assert acc.promotion == promo
    assert promotion_adders(acc) == adders      # L = 3: ceil(8/3), ceil(4/3), ceil(32/3)
    narrow_pe = FP16_MUL[1] + FP16_ADD[1] + 16 * REG[1] + 32 * REG[1]   # + wide register
    wide_pe = FP16_MUL[1] + FP32_ADD[1] + 32 * REG[1]
    a = array_area(acc, H45)
    assert a["area_um2"] == pytest.approx(32 * narrow_pe + adders * FP32_ADD[1]
                                          + 4 * wide_pe)
    assert a["baseline_area_um2"] == pytest.approx(32 * wide_pe)
    assert a["accumulator_area_um2"] == pytest.approx(
        32 * (FP16_ADD[1] + 48 * REG[1]) + adders * FP32_ADD[1]
        + 4 * (FP32_ADD[1] + 32 * REG[1]))
    move = 0 if promo == "per-pe" else 16 * REG[0]        # the fp16 partial sum moves out
    assert mac_cost(acc, H45, "narrow").energy_pj == pytest.approx(
        FP16_MUL[0] + FP16_ADD[0] + 16 * REG[0] + (FP32_ADD[0] + 32 * REG[0] + move) / 3)


def test_promotion_default_and_round_trip(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text(ACC_YAML.replace(", promotion: PROMO", ""))
    acc = load_accelerator(p)
    assert acc.promotion == "outside" and acc.refetch == "buffer"
    d = acc.describe()
    assert d["structure"]["promotion"] == "outside"
    assert d["pricing"] == {"refetch": "buffer", "estimator": "auto"}
    q = tmp_path / "back.yaml"
    d2 = dict(d, structure=dict(d["structure"], promotion="per-row"),
              pricing={"refetch": "pe", "estimator": "flag"})
    q.write_text(yaml.safe_dump(d2))
    back = load_accelerator(q)
    assert (back.promotion, back.refetch, back.estimator_hardware) == ("per-row", "pe",
                                                                        "flag")
    assert load_accelerator(q).describe() == {**d2, "name": d["name"]}


@pytest.mark.parametrize("text, words", [
    (ACC_YAML.replace("PROMO", "per-wafer"), ["structure.promotion", "per-pe"]),
    (ACC_YAML.replace("kind: chunked, chunk_size: 3, promotion: PROMO",
                      "kind: sequential, promotion: per-pe"),
     ["structure.promotion", "chunked"]),
    (ACC_YAML.replace("PROMO", "outside") + "pricing: {refetch: disk}\n",
     ["pricing.refetch", "buffer"]),
    (ACC_YAML.replace("PROMO", "outside") + "pricing: {estimator: magic}\n",
     ["pricing.estimator", "exponent"]),
    (ACC_YAML.replace("PROMO", "outside") + "pricing: {refech: pe}\n",
     ["refech", "did you mean 'refetch'"]),
])
def test_bad_pricing_keys_are_one_line(tmp_path, capsys, text, words):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    line = one_line_error(*run(capsys, "cost", "mac", "-a", str(p)))
    for w in ["bad.yaml"] + words:
        assert w in line, line


# ---- item 3 and 5: estimators, re-fetch, views ----------------------------------------
def _layers(m, n, k, r):
    return [{"name": "fc", "m": m, "n": n, "k": k, "recomputed": r}]


def test_views_by_hand():
    acc = load_accelerator("int8-int16acc-sat")       # 256 x 256, ws
    m, n, k, r = 8, 32, 100, 10
    d = price_run(acc, H45, _layers(m, n, k, r), "exponent", "buffer")
    acc16, acc32 = 0.05 + 16 * REG[0], 0.1 + 32 * REG[0]
    # exponent estimator on int8: 2 int adds of ceil(log2 8) + 1 = 4 bits per term
    # (linear in width below int8: 0.03 * 4 / 8), per-output test: int16 mul + add
    alpha = math.log(3.1 / 0.2) / math.log(16)
    est = m * n * k * 2 * 0.03 * 4 / 8 + m * n * (0.2 * 4 ** alpha + 0.05)
    v = d["views"]
    assert d["breakdown"]["estimator_pj"] == pytest.approx(est)
    assert v["accumulator"]["energy_pj"] == pytest.approx(
        m * n * k * acc16 + r * k * acc32 + est)
    assert v["accumulator"]["baseline_energy_pj"] == pytest.approx(m * n * k * acc32)
    assert v["mac"]["energy_pj"] == pytest.approx(d["energy_pj"])
    # ws on 256 x 256: A m*k*ceil(n/256) int8, B k*n int8, outputs m*n*ceil(k/256) int32
    bits = m * k * 8 + k * n * 8 + m * n * 32
    assert sram_bits(acc, m, n, k) == bits
    assert v["memory"]["energy_pj"] == pytest.approx(d["energy_pj"] + bits / 32 * 5)
    assert v["memory"]["baseline_energy_pj"] == pytest.approx(
        d["baseline_energy_pj"] + bits / 32 * 5)
    for view in v.values():
        assert view["energy_savings"] == pytest.approx(
            1 - view["energy_pj"] / view["baseline_energy_pj"])


def test_sram_bits_dataflows():
    acc = load_accelerator("fp8-hopper")         # 16 x 16, os, e4m3 operands, fp32 wide
    m, n, k = 40, 20, 50
    assert sram_bits(acc, m, n, k) == m * k * 2 * 8 + k * n * 3 * 8 + m * n * 32
    ws = dataclasses.replace(acc, dataflow="ws")
    assert sram_bits(ws, m, n, k) == m * k * 2 * 8 + k * n * 8 + m * n * 4 * 32
    is_ = dataclasses.replace(acc, dataflow="is")
    assert sram_bits(is_, m, n, k) == m * k * 8 + k * n * 3 * 8 + m * n * 4 * 32


@pytest.mark.parametrize("estimator, per_output", [
    # output: one compare, an int add of the int16 "exponent" (ceil(log2 16) = 4) + 1 =
    # 5 bits, linear below the int8 anchor; flag: one register bit per output
    ("output", 0.03 * 5 / 8),
    ("flag", REG[0]),
])
def test_output_and_flag_estimators(estimator, per_output):
    acc = load_accelerator("int8-int16acc-sat")
    m, n, k = 4, 8, 64
    d = price_run(acc, H45, _layers(m, n, k, 0), estimator, "none")
    assert d["breakdown"]["estimator_pj"] == pytest.approx(m * n * per_output)


def test_break_even_per_view_is_where_savings_vanish():
    acc = load_accelerator("fp8-e4m3-fp16acc")
    layers = [{"name": "a", "m": 6, "n": 40, "k": 300}, {"name": "b", "m": 6, "n": 10,
                                                          "k": 40}]
    for est in ("none", "exact", "norm", "exponent", "output", "flag"):
        f = run_break_even(acc, H45, layers, est)
        p0 = price_run(acc, H45, [dict(L, recomputed=0) for L in layers], est)
        p1 = price_run(acc, H45, [dict(L, recomputed=L["m"] * L["n"]) for L in layers],
                       est)
        for view, fv in f.items():
            s0 = p0["views"][view]["energy_savings"]
            s1 = p1["views"][view]["energy_savings"]
            assert s0 + fv * (s1 - s0) == pytest.approx(0, abs=1e-12), (est, view)
    table = break_even_table(acc, H45, layers)
    assert set(table["dynamic"]) == {"none", "exact", "norm", "exponent", "output", "flag"}
    # static runs no narrow pass for wide neurons: it saves up to all-wide (f* = 1)
    assert table["static"]["mac"] == pytest.approx(1.0)
    # cheaper decisions break even later
    d = table["dynamic"]
    assert d["exact"]["mac"] < d["exponent"]["mac"] < d["output"]["mac"] <= d["none"]["mac"]


def test_priced_estimator_follows_policy_and_override():
    acc = load_accelerator("fp16-fp16acc")
    assert priced_estimator(acc, "condition", "norm") == "norm"
    assert priced_estimator(acc, "overflow", "exact") == "flag"
    assert priced_estimator(acc, "static", "exact") == "none"
    assert priced_estimator(acc, "random", "exact") == "none"
    hw = dataclasses.replace(acc, estimator_hardware="output")
    assert priced_estimator(hw, "condition", "exact") == "output"
    assert priced_estimator(hw, "uniform-narrow", "exact") == "none"
    a = assumptions(hw, H45, "output")
    assert "narrow output alone" in a["estimator_hardware"] and "promotion" not in a
    assert "promotion" in assumptions(load_accelerator("fp8-hopper"), H45, "none")


# ---- item 1 and 4: simulate prints and reports per inference ---------------------------
def test_simulate_json_unit_keys(capsys):
    rc, out, err = run(capsys, "simulate", "digits-mlp-relu", "--limit", "20",
                       "--narrow-only", "--json", "--narrow", "bf16", "--policy",
                       "condition", "--tau", "0.05", "--estimator", "exponent")
    assert rc == 0
    d = json.loads(out)
    n = d["n_samples"]
    assert d["energy_per_inference_pj"] == pytest.approx(d["energy_pj"] / n)
    assert d["baseline_energy_per_inference_pj"] == pytest.approx(
        d["baseline_energy_pj"] / n)
    assert d["cycles_per_inference"] == pytest.approx(d["cycles"] / n)
    assert d["area_savings"] == pytest.approx(1 - d["area_um2"] / d["baseline_area_um2"])
    assert set(d["views"]) == {"accumulator", "mac", "memory"}
    assert d["views"]["mac"]["energy_per_inference_pj"] == pytest.approx(
        d["energy_per_inference_pj"])
    assert d["estimator"] == "exponent"
    assert d["break_even_fraction"]["mac"] == pytest.approx(
        d["break_even"]["dynamic"]["exponent"]["mac"])
    assert d["assumptions"]["refetch"] == "buffer"
    assert "exponent-only adder" in d["assumptions"]["estimator_hardware"]


def test_simulate_text_shows_views_and_assumptions(capsys):
    rc, out, err = run(capsys, "simulate", "digits-mlp-relu", "--limit", "10",
                       "--narrow-only", "-a", "fp8-hopper", "-q")
    assert rc == 0
    assert "pJ per inference vs" in out and "um2 vs" in out
    rows = {ln.split()[0] for ln in out.splitlines() if ln.strip()}
    assert {"accumulator", "whole", "with"} <= rows
    assert "promotion outside: 2 wide fp32 adder(s) outside" in out
    assert "re-fetch buffer" in out and "baseline: the same 16x16 array" in out


def test_uniform_wide_is_the_baseline():
    acc = load_accelerator("fp16-fp16acc")
    r = simulate("digits-mlp-relu", acc, policy="uniform-wide", limit=5)
    p = price_simulation(acc, H45, r)
    assert p["energy_savings"] == pytest.approx(0) and p["area_savings"] == 0
    assert p["views"]["accumulator"]["area_savings"] == 0


def test_sweep_and_report_carry_unit_keys():
    acc = load_accelerator("fp16-fp16acc")
    r = simulate("digits-mlp-relu", acc, policy="uniform-narrow", limit=8)
    m = point_metrics(r, price_simulation(acc, H45, r))
    assert m["energy_per_inference_pj"] == pytest.approx(m["energy_pj"] / 8)
    assert m["energy_per_sample_pj"] == m["energy_per_inference_pj"]
    for k in ("baseline_area_um2", "area_savings", "cycles_per_inference",
              "accumulator_energy_savings", "memory_energy_savings",
              "accumulator_area_savings", "break_even_fraction"):
        assert m[k] is not None, k
    # a record with only the new key is read by the report
    rec = {"id": "x", "params": {"trace": "t", "policy": "uniform-narrow"},
           "metrics": {"energy_per_inference_pj": 5.0, "agreement": 1.0}}
    front = pareto_json([rec])["pareto"]["t"]
    assert front[0]["energy_per_inference_pj"] == 5.0


# ---- cost mac / export ----------------------------------------------------------------
def test_cost_mac_break_even_table_and_fraction(capsys):
    rc, out, err = run(capsys, "cost", "mac", "-a", "int8-int16acc-sat", "--json",
                       "--fraction", "0.05", "--estimator", "flag")
    assert rc == 0
    d = json.loads(out)
    assert d["break_even_fraction"] == d["break_even"]["dynamic"]["flag"]["mac"]
    # flag: one register bit per output; f* = (k(e_w - e_n) - s) / (k (e_w + r))
    k, e_n, e_w = 512, 0.2 + 0.05 + 16 * REG[0], 0.2 + 0.1 + 32 * REG[0]
    assert d["break_even_fraction"] == pytest.approx(
        (k * (e_w - e_n) - REG[0]) / (k * (e_w + 16 / 32 * 5)))
    assert d["savings_at_fraction"]["mac"] > 0          # 5 % < f* ~ 6 %
    rc, out, err = run(capsys, "cost", "mac", "-a", "fp8-hopper")
    assert rc == 0 and "dynamic, exponent" in out and "static" in out
    assert "promotion outside" in out


@pytest.mark.parametrize("argv, word", [
    (["cost", "mac", "-a", "int8-int32acc", "--fraction", "1.5"], "--fraction"),
    (["cost", "mac", "-a", "int8-int32acc", "--fraction", "-0.1"], "--fraction"),
    (["cost", "export", "-a", "int8-int32acc", "--m", "4", "--n", "5", "--recomputed",
      "1.5", "--out", "x.yaml"], "--recomputed"),
    (["cost", "export", "-a", "int8-int32acc", "--m", "4", "--n", "5", "--recomputed",
      "21", "--out", "x.yaml"], "--recomputed"),
    (["cost", "export", "-a", "int8-int32acc", "--recomputed", "lots", "--out", "x.yaml"],
     "--recomputed"),
])
def test_cost_fraction_bad_input(capsys, tmp_path, monkeypatch, argv, word):
    monkeypatch.chdir(tmp_path)
    assert word in one_line_error(*run(capsys, *argv))
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("given, count", [("0.05", 10), ("12", 12), ("1.0", 200),
                                          ("0", 0)])
def test_cost_export_recomputed_fraction_or_count(capsys, tmp_path, given, count):
    out = tmp_path / "e.yaml"
    rc, _, err = run(capsys, "cost", "export", "-a", "int8-int16acc-sat", "--m", "10",
                     "--n", "20", "--k", "64", "--recomputed", given, "--out", str(out))
    assert rc == 0, err
    doc = yaml.safe_load(out.read_text())
    wide = [c for c in doc["action_counts"]["local"] if "wide_mac" in c["name"]][0]
    assert wide["action_counts"][0]["counts"] == count * 64


def test_builtin_chunked_accelerators_name_their_promotion():
    for name in accsim.list_accelerators():
        acc = load_accelerator(name)
        if acc.structure == "chunked":
            assert acc.source and "promotion:" in Path(acc.source).read_text(), name


# ---- item 6: the README's worked example runs as written and says what it shows --------
def test_readme_worked_example_saves_what_it_claims(capsys):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### What it saves, in one unit", 1)[1]
    cmd = section.split("```sh\n", 1)[1].split("\n```", 1)[0].strip()
    argv = cmd.split()
    assert argv[0] == "accsim"
    rc, out, err = run(capsys, *argv[1:], "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["views"]["accumulator"]["energy_savings"] >= 0.30
    assert d["agreement"] >= d["wide_run"]["agreement"] - 0.005
    pct = f"{100 * d['views']['accumulator']['energy_savings']:.1f} % of accumulator"
    assert pct in " ".join(section.split())
