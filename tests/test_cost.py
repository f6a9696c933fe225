"""Cost model: technology tables, scaling rules, per-MAC cost, mixed-precision pricing.

Oracles: the published tables (Horowitz ISSCC 2014, Jouppi ISCA 2021, Accelergy/Aladdin
register cost) typed in here from the papers (the built-in tables in formats/technology/
must agree), arithmetic by hand on those numbers, SCALE-Sim's fold formula written out,
and the rule "every user error is one line on stderr and exit code 2".
"""

from __future__ import annotations

import ast
import inspect
import dataclasses
import json
import math
import textwrap

import pytest
import yaml

import accsim
from accsim.cli import main
from accsim.hardware import accelergy, cost, pricing, technology
from accsim.hardware.cost import (
    ESTIMATORS,
    break_even_fraction,
    export_accelergy,
    list_technologies,
    load_technology,
    mac_cost,
    op_cost,
    price_run,
)

# Horowitz ISSCC 2014, 45 nm, (energy pj, area um2)
HOROWITZ = {
    "int8_add": (0.03, 36), "int16_add": (0.05, 67), "int32_add": (0.1, 137),
    "fp16_add": (0.4, 1360), "fp32_add": (0.9, 4184),
    "int8_mul": (0.2, 282), "int32_mul": (3.1, 3495),
    "fp16_mul": (1.1, 1640), "fp32_mul": (3.7, 7700),
}
HOROWITZ_MEM = {"sram_read_32b": 5, "dram_read_32b": 640}
REG_BIT = (0.009, 5.98)  # Accelergy Aladdin 40 nm, per bit
# Jouppi ISCA 2021, 7 nm, published energies (pJ)
JOUPPI = {"int8_add": 0.007, "int32_add": 0.03, "fp32_add": 0.38, "fp32_mul": 1.31,
          "int8_mul": 0.07, "sram_read_32b": 7.5, "dram_read_32b": 1300}

OP_ARGS = {"int8_add": ("int_add", 8), "int16_add": ("int_add", 16),
           "int32_add": ("int_add", 32), "fp16_add": ("fp_add", 5, 10),
           "fp32_add": ("fp_add", 8, 23), "int8_mul": ("int_mul", 8),
           "int32_mul": ("int_mul", 32), "fp16_mul": ("fp_mul", 5, 10),
           "fp32_mul": ("fp_mul", 8, 23)}


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, out, err):
    assert rc == 2
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def h45():
    return load_technology("horowitz-45nm")


# ---------------------------------------------------------------------------------------
# tables and anchors

def test_builtin_tables_listed():
    assert list_technologies() == ["horowitz-45nm", "jouppi-7nm"]
    for name in list_technologies():
        t = load_technology(name)
        assert t.name == name
        for p in t.primitives.values():
            assert p.status in ("published", "derived") and p.source


def test_horowitz_table_entries_exact(h45):
    for key, (e, a) in HOROWITZ.items():
        p = h45.primitives[key]
        assert (p.energy_pj, p.area_um2, p.status) == (e, a, "published"), key
    for key, e in HOROWITZ_MEM.items():
        assert h45.primitives[key].energy_pj == e
    p = h45.primitives["register_bit"]
    assert (p.energy_pj, p.area_um2) == REG_BIT


@pytest.mark.parametrize("key", sorted(HOROWITZ))
def test_rules_reproduce_horowitz_anchors(h45, key):
    c = op_cost(h45, *OP_ARGS[key])
    assert (c.energy_pj, c.area_um2) == HOROWITZ[key]


def test_jouppi_published_and_derived():
    t = load_technology("jouppi-7nm")
    for key, e in JOUPPI.items():
        assert t.primitives[key].energy_pj == e and t.primitives[key].status == "published"
    for key in ("int16_add", "int32_mul", "fp16_add", "fp16_mul", "register_bit"):
        assert t.primitives[key].status == "derived"
    for key in JOUPPI:
        if key in OP_ARGS:
            assert op_cost(t, *OP_ARGS[key]).energy_pj == JOUPPI[key]
    # derived entries: 45 nm value x the published 7/45 nm ratio of the sibling, 4 digits
    assert t.primitives["int32_mul"].energy_pj == pytest.approx(3.1 * 0.07 / 0.2, rel=1e-3)
    assert t.primitives["fp16_add"].energy_pj == pytest.approx(0.4 * 0.38 / 0.9, rel=1e-3)
    assert t.primitives["fp16_mul"].energy_pj == pytest.approx(1.1 * 1.31 / 3.7, rel=1e-3)
    assert t.primitives["int8_add"].area_um2 == pytest.approx(36 * (7 / 45) ** 2, rel=1e-3)


def test_cli_ops_json(capsys):
    rc, out, err = run(capsys, "cost", "ops", "--technology", "horowitz-45nm",
                       "--op", "fp_add:e5m7", "--op", "int_add:12", "--op", "int_mul:8x16",
                       "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)["ops"]
    for key, (e, a) in HOROWITZ.items():
        assert d[key] == {"energy_pj": e, "area_um2": a}
    # int12 adder: linear between the int8 and int16 anchors
    assert d["int12_add"]["energy_pj"] == pytest.approx(0.04)
    assert d["int12_add"]["area_um2"] == pytest.approx(51.5)
    assert 0.03 < d["e5m7_add"]["energy_pj"] < 0.4  # e5m7 between int and fp16 add
    assert 0.2 < d["int8x16_mul"]["energy_pj"] < 3.1


# ---------------------------------------------------------------------------------------
# scaling rules

@pytest.mark.parametrize("tech", ["horowitz-45nm", "jouppi-7nm"])
def test_scaling_monotone_in_width(tech):
    t = load_technology(tech)
    for op in ("int_add", "int_mul"):
        prev = None
        for w in range(2, 65):
            c = op_cost(t, op, w)
            if prev:
                assert c.energy_pj > prev.energy_pj and c.area_um2 > prev.area_um2, (op, w)
            prev = c
    for op in ("fp_add", "fp_mul"):
        for e in range(2, 12):
            prev = None
            for m in range(53):
                c = op_cost(t, op, e, m)
                if prev:
                    assert c.energy_pj > prev.energy_pj, (op, e, m)
                    assert c.area_um2 > prev.area_um2, (op, e, m)
                prev = c
        for m in (3, 10, 23):
            es = [op_cost(t, op, e, m).energy_pj for e in range(2, 12)]
            assert es == sorted(es)
    assert op_cost(t, "fp_add", 8, 7).energy_pj < op_cost(t, "fp_add", 8, 23).energy_pj


def test_int_add_linear_and_fp_mul_by_significand_product(h45):
    # integer adders linear in width between anchors, proportional beyond
    assert op_cost(h45, "int_add", 24).energy_pj == pytest.approx(0.075)
    assert op_cost(h45, "int_add", 64).energy_pj == pytest.approx(0.2)
    assert op_cost(h45, "int_add", 4).area_um2 == pytest.approx(18)
    # fp multiplier: power law in p_a*p_b through fp16 (11*11) and fp32 (24*24)
    alpha = math.log(3.7 / 1.1) / math.log(24 * 24 / (11 * 11))
    bf16 = 1.1 * (8 * 8 / 121) ** alpha
    assert op_cost(h45, "fp_mul", 8, 7).energy_pj == pytest.approx(bf16)
    # fp adder: size p*log2(p) + e, power law through fp16 and fp32
    s = lambda e, p: p * math.log2(p) + e
    beta = math.log(0.9 / 0.4) / math.log(s(8, 24) / s(5, 11))
    assert op_cost(h45, "fp_add", 8, 13).energy_pj == pytest.approx(
        0.4 * (s(8, 14) / s(5, 11)) ** beta)


# ---------------------------------------------------------------------------------------
# per-MAC cost, by hand from the table

def test_int8_mac_int16_vs_int32_by_hand(h45):
    # int8 x int8 multiplier + accumulator adder + accumulator register (bits x per-bit)
    e32 = 0.2 + 0.1 + 32 * 0.009
    a32 = 282 + 137 + 32 * 5.98
    e16 = 0.2 + 0.05 + 16 * 0.009
    a16 = 282 + 67 + 16 * 5.98
    assert round(e32, 2) == 0.59 and round(a32) == 610
    assert round(e16, 2) == 0.39 and round(a16) == 445
    acc = accsim.load_accelerator("int8-int16acc-sat")
    n, w = mac_cost(acc, h45, "narrow"), mac_cost(acc, h45, "wide")
    assert n.energy_pj == pytest.approx(e16) and n.area_um2 == pytest.approx(a16)
    assert w.energy_pj == pytest.approx(e32) and w.area_um2 == pytest.approx(a32)
    assert 1 - e16 / e32 == pytest.approx(0.33, abs=0.005)   # -33 % energy
    assert 1 - a16 / a32 == pytest.approx(0.27, abs=0.005)   # -27 % area


def test_fp16_mac_and_structures(h45):
    # fp16 x fp16 into fp32 (sequential): fp16 mul + fp32 add + 32-bit register.
    # (2.0 pJ / 5824 um2 without the register.)
    acc = accsim.load_accelerator("fp16-fp32acc")
    n = mac_cost(acc, h45, "narrow")
    assert n.energy_pj == pytest.approx(1.1 + 0.9 + 32 * 0.009)
    assert n.area_um2 == pytest.approx(1640 + 4184 + 32 * 5.98)
    # fused 4-term: per MAC fp16 mul + (4 int adds of 24+3+1+3 = 31 bits + one fp32 add +
    # one fp32 register write) / 4; int31 add is linear between int16 and int32
    tc = accsim.load_accelerator("tensorcore-4term")
    int31 = 0.05 + (0.1 - 0.05) * 15 / 16
    assert mac_cost(tc, h45, "narrow").energy_pj == pytest.approx(
        1.1 + (4 * int31 + 0.9 + 32 * 0.009) / 4)
    # chunked: + (wide fp32 add + register) / chunk_size, plus moving the e8m13 partial
    # sum (22 bits) to an adder outside the array (fp8-hopper: promotion outside)
    hop = accsim.load_accelerator("fp8-hopper")
    assert hop.promotion == "outside"
    seq = mac_cost(hop.__class__(hop.input, hop.weight, hop.narrow, hop.wide,
                                 name="seq", narrow_rounding="rz"), h45, "narrow")
    assert mac_cost(hop, h45, "narrow").energy_pj == pytest.approx(
        seq.energy_pj + (0.9 + 32 * 0.009 + 22 * 0.009) / 128)
    per_pe = dataclasses.replace(hop, promotion="per-pe")
    assert mac_cost(per_pe, h45, "narrow").energy_pj == pytest.approx(
        seq.energy_pj + (0.9 + 32 * 0.009) / 128)


def test_every_builtin_accelerator_priced(h45):
    for name in accsim.list_accelerators():
        acc = accsim.load_accelerator(name)
        for tech in list_technologies():
            n, w = mac_cost(acc, tech, "narrow"), mac_cost(acc, tech, "wide")
            assert n.energy_pj > 0 and w.energy_pj > 0 and n.area_um2 > 0


def test_cli_mac_json(capsys):
    rc, out, err = run(capsys, "cost", "mac", "--accelerator", "int8-int16acc-sat",
                       "--technology", "horowitz-45nm", "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)
    assert d["narrow"]["energy_pj"] == pytest.approx(0.394)
    assert d["wide"]["energy_pj"] == pytest.approx(0.588)
    # re-reading operands from an 8 KB SRAM (Horowitz) breaks even at ~6 % (K=512)
    assert d["break_even_fraction"] == pytest.approx(0.194 / (0.588 + 16 / 32 * 5))
    assert round(d["break_even_fraction"], 2) == 0.06
    rc, out, err = run(capsys, "cost", "mac", "-a", "int8-int16acc-sat", "--refetch", "pe",
                       "--json")
    # operands still in PE registers: re-read 16 bits of registers per term, ~26 %
    assert json.loads(out)["break_even_fraction"] == pytest.approx(
        0.194 / (0.588 + 16 * 0.009))
    assert 0.26 <= json.loads(out)["break_even_fraction"] <= 0.27
    rc, out, err = run(capsys, "cost", "mac", "-a", "tensorcore-4term")
    assert rc == 0 and "break-even" in out


# ---------------------------------------------------------------------------------------
# mixed precision

def _layers(m, n, k, r):
    return [{"name": "fc", "m": m, "n": n, "k": k, "recomputed": r}]


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("refetch", ["buffer", "pe"])
@pytest.mark.parametrize("accname", ["int8-int16acc-sat", "fp16-fp16acc", "fp8-hopper",
                                     "tensorcore-4term"])
def test_savings_fall_to_break_even(h45, estimator, refetch, accname):
    acc = accsim.load_accelerator(accname)
    m, n, k = 16, 64, 512
    prev = None
    for r in range(0, m * n + 1, 64):
        s = price_run(acc, h45, _layers(m, n, k, r), estimator, refetch)["energy_savings"]
        if prev is not None:
            assert s < prev
        prev = s
    f = break_even_fraction(acc, h45, k, estimator, refetch, n=n)
    # at the break-even fraction (fractional outputs allowed by linearity) savings are 0
    r0 = price_run(acc, h45, _layers(m, n, k, 0), estimator, refetch)
    r1 = price_run(acc, h45, _layers(m, n, k, m * n), estimator, refetch)
    s_at_f = r0["energy_savings"] + f * (r1["energy_savings"] - r0["energy_savings"])
    assert s_at_f == pytest.approx(0, abs=1e-12)
    if 0 < f < 1:
        below = math.floor(f * m * n)
        above = below + 1
        assert price_run(acc, h45, _layers(m, n, k, below), estimator,
                         refetch)["energy_savings"] >= 0
        assert price_run(acc, h45, _layers(m, n, k, above), estimator,
                         refetch)["energy_savings"] <= 0


def test_price_run_by_hand(h45):
    acc = accsim.load_accelerator("int8-int16acc-sat")
    m, n, k, r = 8, 32, 100, 10
    d = price_run(acc, h45, _layers(m, n, k, r), "exact", "buffer")
    e_n, e_w = 0.2 + 0.05 + 16 * 0.009, 0.2 + 0.1 + 32 * 0.009
    # exact estimator: one extra narrow MAC per term; per-output test: int16 x int16
    # multiply (int_mul power law between int8 and int32) + int16 add
    alpha = math.log(3.1 / 0.2) / math.log(16)
    test = 0.2 * (256 / 64) ** alpha + 0.05
    b = d["breakdown"]
    assert b["narrow_macs_pj"] == pytest.approx(m * n * k * e_n)
    assert b["wide_macs_pj"] == pytest.approx(r * k * e_w)
    assert b["estimator_pj"] == pytest.approx(m * n * k * e_n + m * n * test)
    assert b["refetch_pj"] == pytest.approx(r * k * 16 / 32 * 5)
    assert d["energy_pj"] == pytest.approx(sum(b.values()))
    assert d["baseline_energy_pj"] == pytest.approx(m * n * k * e_w)
    assert d["energy_savings"] == pytest.approx(1 - d["energy_pj"] / d["baseline_energy_pj"])
    # array 256 x 256 ws: S_R = k, S_C = n, T = m -> 1 fold of 2*256 + 256 + m - 2 cycles;
    # 10 re-issues on a 256-lane wide column: one pass of k cycles
    assert d["baseline_cycles"] == 2 * 256 + 256 + m - 2
    assert d["cycles"] == d["baseline_cycles"] + k
    assert d["area_um2"] == pytest.approx(256 * 256 * (282 + 67 + 16 * 5.98)
                                          + 256 * (282 + 137 + 32 * 5.98))
    assert d["recomputed_fraction"] == r / (m * n)
    # operands still in the PE
    d2 = price_run(acc, h45, _layers(m, n, k, r), "none", "pe")
    assert d2["breakdown"]["refetch_pj"] == pytest.approx(r * k * 16 * 0.009)
    assert d2["breakdown"]["estimator_pj"] == 0


def test_cycles_dataflows():
    acc = accsim.load_accelerator("fp8-hopper")  # 16 x 16
    for df, (sr, sc, t) in {"os": (100, 40, 300), "ws": (300, 40, 100),
                            "is": (300, 100, 40)}.items():
        a = acc.__class__(acc.input, acc.weight, acc.narrow, acc.wide, rows=16, cols=16,
                          dataflow=df)
        folds = math.ceil(sr / 16) * math.ceil(sc / 16)
        assert cost.gemm_cycles(a, 100, 40, 300) == folds * (2 * 16 + 16 + t - 2)


def test_norm_estimator_shared_over_row(h45):
    acc = accsim.load_accelerator("fp16-fp16acc")
    d = price_run(acc, h45, _layers(4, 10, 50, 0), "norm", "buffer")
    sq = 1.1 + 0.4 + 16 * 0.009   # x*x in fp16 mul + fp16 add + register
    test = 1.1 + 0.4              # tau*|z| compare in the narrow format
    assert d["breakdown"]["estimator_pj"] == pytest.approx(4 * 50 * sq + 40 * test)


def test_export_accelergy(tmp_path, h45, capsys):
    acc = accsim.load_accelerator("int8-int16acc-sat")
    layers = _layers(8, 8, 64, 5)
    out = tmp_path / "ert.yaml"
    doc = export_accelergy(acc, h45, layers, out=out, estimator="exact")
    back = yaml.safe_load(out.read_text())
    assert back == doc
    energy = {t["name"]: {a["name"]: a["energy"] for a in t["actions"]}
              for t in back["ERT"]["tables"]}
    counts = {c["name"]: {a["name"]: a["counts"] for a in c["action_counts"]}
              for c in back["action_counts"]["local"]}
    total = sum(energy[c][a] * counts[c][a] for c in counts for a in counts[c])
    assert total == pytest.approx(price_run(acc, h45, layers, "exact", "buffer")["energy_pj"])
    f = tmp_path / "cli.yaml"
    rc, _, err = run(capsys, "cost", "export", "--accelerator", "fp16-fp32acc",
                     "--m", "2", "--n", "3", "--k", "8", "--recomputed", "1",
                     "--out", str(f))
    assert rc == 0 and err == "" and "ERT" in yaml.safe_load(f.read_text())


@pytest.mark.parametrize("module", [cost, technology, pricing, accelergy])
def test_cost_does_not_import_engine(module):
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    assert not any(x.split(".")[-1] in ("engine", "network", "kernels", "accelerator")
                   for x in names)


def test_cost_exports_its_parts():
    """accsim.hardware.cost (the old accsim.cost) keeps every public name it had before
    the split into technology, pricing and accelergy."""
    before = ["Cost", "ESTIMATORS", "OPS", "Primitive", "REFETCH", "STANDARD_OPS", "STATUSES",
              "Technology", "ZERO", "action_counts", "add_cost", "array_area",
              "break_even_fraction", "energy_table", "estimator_costs", "export_accelergy",
              "gemm_cycles", "list_technologies", "load_technology", "mac_cost", "mul_cost",
              "op_cost", "ops_table", "parse_op", "price_run", "price_simulation",
              "refetch_energy_per_term", "register_cost", "technology_from_doc"]
    assert set(before) <= set(cost.__all__)
    for name in cost.__all__:
        assert any(getattr(m, name, None) is getattr(cost, name)
                   for m in (technology, pricing, accelergy)), name


# ---------------------------------------------------------------------------------------
# user tables and bad input

def _write(tmp_path, text, name="mytech.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


USER = """\
    kind: technology
    version: 1
    primitives:
      int8_mul: {energy_pj: 0.1, area_um2: 100, status: derived, source: my synthesis}
      int16_add: {energy_pj: 0.02, area_um2: 30, status: derived, source: my synthesis}
      int32_add: {energy_pj: 0.04, area_um2: 60, status: derived, source: my synthesis}
      register_bit: {energy_pj: 0.001, area_um2: 2, status: derived, source: my synthesis}
      sram_read_32b: {energy_pj: 1.0, status: derived, source: my synthesis}
    """


def test_user_technology(tmp_path, capsys):
    p = _write(tmp_path, USER)
    t = load_technology(p)
    assert t.name == "mytech"
    acc = accsim.load_accelerator("int8-int16acc-wrap")
    assert mac_cost(acc, t, "narrow").energy_pj == pytest.approx(0.1 + 0.02 + 16 * 0.001)
    assert op_cost(t, "int_mul", 16).energy_pj == pytest.approx(0.4)  # single anchor: ∝ a*b
    rc, out, _ = run(capsys, "cost", "mac", "-a", "int8-int16acc-wrap", "-t", str(p),
                       "--json")
    assert rc == 0 and json.loads(out)["narrow"]["energy_pj"] == pytest.approx(0.136)


def test_user_table_missing_primitive(tmp_path, capsys):
    p = _write(tmp_path, USER)
    rc, out, err = run(capsys, "cost", "mac", "-a", "fp16-fp32acc", "-t", str(p))
    line = one_line_error(rc, out, err)
    assert "mytech" in line and "fp16_mul" in line and "fp16-fp32acc" in line
    p2 = _write(tmp_path, USER.replace("      register_bit", "      #"), "noreg.yaml")
    rc, out, err = run(capsys, "cost", "mac", "-a", "int8-int16acc-wrap", "-t", str(p2))
    line = one_line_error(rc, out, err)
    assert "noreg" in line and "register_bit" in line
    p3 = _write(tmp_path, USER.replace("      sram_read_32b", "      #"), "nosram.yaml")
    rc, out, err = run(capsys, "cost", "mac", "-a", "int8-int16acc-wrap", "-t", str(p3))
    line = one_line_error(rc, out, err)
    assert "nosram" in line and "sram_read_32b" in line


@pytest.mark.parametrize("bad, words", [
    (USER.replace("energy_pj: 0.1,", "energy_pj: -0.1,"), ["primitives.int8_mul.energy_pj"]),
    (USER.replace("energy_pj: 0.1, ", ""), ["primitives.int8_mul.energy_pj", "missing"]),
    (USER.replace("area_um2: 100, ", ""), ["primitives.int8_mul.area_um2", "missing"]),
    (USER.replace("status: derived, source: my synthesis}",
                  "status: guessed, source: my synthesis}", 1), ["int8_mul.status"]),
    (USER.replace("int8_mul:", "int8_div:"), ["int8_div", "unknown primitive"]),
    (USER.replace("energy_pj: 0.04", "energy_pj: 0.01"), ["int32_add", "decrease"]),
    (USER.replace("version: 1", "version: 2"), ["version"]),
    (USER.replace("technology", "accelerator"), ["kind"]),
    (USER.rstrip(" ") + "    colour: red\n", ["colour", "unknown key"]),
])
def test_bad_tables(tmp_path, capsys, bad, words):
    p = _write(tmp_path, bad, "bad.yaml")
    with pytest.raises(ValueError) as exc:
        load_technology(p)
    msg = str(exc.value)
    assert "bad.yaml" in msg and "\n" not in msg
    for w in words:
        assert w in msg
    rc, out, err = run(capsys, "cost", "ops", "-t", str(p))
    line = one_line_error(rc, out, err)
    assert "bad.yaml" in line


@pytest.mark.parametrize("argv, word", [
    (["cost", "ops", "-t", "nosuch-3nm"], "nosuch-3nm"),
    (["cost", "ops", "--op", "fp_div:e5m7"], "fp_div"),
    (["cost", "ops", "--op", "int_add:e5m7"], "int_add"),
    (["cost", "ops", "--op", "fp_add:zz"], "fp_add"),
    (["cost", "mac", "-a", "nosuch-acc"], "nosuch-acc"),
    (["cost", "mac", "-a", "int8-int32acc", "--k", "0"], "--k"),
    (["cost", "mac", "-a", "int8-int32acc", "--estimator", "magic"], "estimator"),
    (["cost"], "cost"),
])
def test_cli_bad_input(capsys, argv, word):
    rc, out, err = run(capsys, *argv)
    assert word in one_line_error(rc, out, err)


def test_api_bad_input(h45):
    with pytest.raises(ValueError, match="op"):
        op_cost(h45, "fp_div", 5, 10)
    with pytest.raises(ValueError, match="int_add"):
        op_cost(h45, "int_add", -3)
    acc = accsim.load_accelerator("int8-int32acc")
    with pytest.raises(ValueError, match="recomputed"):
        price_run(acc, h45, _layers(2, 2, 4, 5))
    with pytest.raises(ValueError, match="'m'"):
        price_run(acc, h45, [{"name": "x", "n": 2, "k": 2}])
    with pytest.raises(ValueError, match="estimator"):
        price_run(acc, h45, _layers(2, 2, 4, 0), estimator="magic")
    with pytest.raises(ValueError, match="refetch"):
        price_run(acc, h45, _layers(2, 2, 4, 0), refetch="disk")
