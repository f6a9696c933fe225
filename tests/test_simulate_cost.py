"""`accsim simulate --json` prices the run with the cost model: the energy, area, cycles
and breakdown keys it adds to the simulation result."""

import json

import pytest

from accsim.hardware.accelerator import load_accelerator
from accsim.cli import main
from accsim.hardware.cost import mac_cost, price_run


def _run(capsys, *args):
    rc = main(["simulate", "digits-mlp-relu", "--limit", "20", "--narrow-only", "--json",
               *args])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def test_simulate_json_has_cost_keys(capsys):
    d = _run(capsys)
    for key in ("accuracy", "reference_accuracy", "agreement", "recomputed_fraction",
                "energy_pj", "baseline_energy_pj", "energy_savings", "area_um2", "cycles",
                "layers", "breakdown"):
        assert key in d, key
    assert d["recomputed_fraction"] == 0.0
    assert d["energy_savings"] == pytest.approx(1 - d["energy_pj"] / d["baseline_energy_pj"])
    assert set(d["breakdown"]) >= {"narrow_macs_pj", "wide_macs_pj", "estimator_pj",
                                   "refetch_pj"}
    for lay in d["layers"]:
        assert lay["recomputed_fraction"] == 0.0
        assert lay["m"] == 20 and lay["outputs"] == lay["m"] * lay["n"]


def test_simulate_energy_is_narrow_macs_times_mac_energy(capsys):
    """With nothing re-issued the energy is (sum of m*n*k) narrow MACs, priced by hand."""
    d = _run(capsys, "--accelerator", "int8-int16acc-sat")
    acc = load_accelerator("int8-int16acc-sat")
    macs = sum(lay["m"] * lay["n"] * lay["K"] for lay in d["layers"])
    narrow = mac_cost(acc, "horowitz-45nm", "narrow").energy_pj
    wide = mac_cost(acc, "horowitz-45nm", "wide").energy_pj
    assert d["energy_pj"] == pytest.approx(macs * narrow)
    assert d["baseline_energy_pj"] == pytest.approx(macs * wide)
    # int16 vs int32 accumulator on Horowitz 45 nm: 0.394 vs 0.588 pJ per MAC
    assert narrow == pytest.approx(0.2 + 0.05 + 16 * 0.009)
    assert wide == pytest.approx(0.2 + 0.1 + 32 * 0.009)
    layers = [{"name": x["name"], "m": x["m"], "n": x["n"], "k": x["K"], "recomputed": 0}
              for x in d["layers"]]
    assert price_run(acc, "horowitz-45nm", layers)["energy_pj"] == pytest.approx(d["energy_pj"])


def test_simulate_unknown_technology_is_one_line(capsys):
    rc = main(["simulate", "digits-mlp-relu", "--limit", "5", "--narrow-only", "--json",
               "--technology", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "nope" in err
