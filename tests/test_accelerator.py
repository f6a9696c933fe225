"""Accelerators in YAML: loading, validation with file/key errors, describe, CLI, matmul.

Oracles: numpy float64 (exact for the small-integer cases used), Python ints for integer
accumulators (wrap: reduce the exact sum; saturate: clamp after every add, in order), and a
step-by-step fp16 accumulator built from float64 adds (exact here) and numpy's correctly
rounded float64 -> float16 cast.
"""

import dataclasses
import json

import numpy as np
import pytest
import yaml

from accsim import load_format
from accsim.cli import main
from accsim.hardware.accelerator import Accelerator, list_accelerators, load_accelerator
from accsim.numerics.config import builtin_dir
from accsim.numerics.datapath import Datapath
from accsim.numerics.formats import FloatFormat, IntFormat

BUILTINS = [
    "bf16-fp32acc", "fp16-fp16acc", "fp16-fp32acc", "fp8-e4m3-fp16acc", "fp8-hopper",
    "int8-int16acc-sat", "int8-int16acc-wrap", "int8-int32acc", "tensorcore-4term",
]

VALID = {
    "kind": "accelerator",
    "version": 1,
    "description": "test accelerator",
    "operands": {"input": "fp16", "weight": "fp16"},
    "product": {"mode": "exact"},
    "narrow": {"format": "fp16", "rounding": "rne"},
    "wide": {"format": "fp32", "rounding": "rne"},
    "structure": {"kind": "chunked", "chunk_size": 32},
    "array": {"rows": 8, "cols": 8, "dataflow": "os", "clock_ghz": 1.0},
}


def write(tmp_path, doc, name="x.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def edited(**changes):
    """A deep copy of VALID; ``section=value`` replaces, ``section=None`` deletes."""
    doc = json.loads(json.dumps(VALID))
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


# ---- built-ins ----------------------------------------------------------------------

def test_list_accelerators_has_every_builtin():
    assert list_accelerators() == sorted(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_describe_round_trips(name, tmp_path):
    acc = load_accelerator(name)
    assert isinstance(acc, Accelerator)
    assert acc.name == name
    assert acc.description
    d = acc.describe()
    assert d["kind"] == "accelerator" and d["version"] == 1 and d["name"] == name
    assert d["structure"]["kind"] == acc.structure
    assert d["array"] == {"rows": acc.rows, "cols": acc.cols, "dataflow": acc.dataflow,
                          "clock_ghz": acc.clock_ghz}
    # the document loads back (as YAML and as JSON) to an equal accelerator
    again = load_accelerator(write(tmp_path, d))
    assert again == acc
    p = tmp_path / "y.json.yaml"
    p.write_text(json.dumps(d))
    assert load_accelerator(p) == acc
    # the wide accumulator holds the narrow one
    assert isinstance(acc.wide, FloatFormat) == isinstance(acc.narrow, FloatFormat)


def test_builtin_files_start_with_a_source_comment():
    for name in BUILTINS:
        text = (builtin_dir() / "accelerators" / f"{name}.yaml").read_text()
        assert text.startswith("#"), name


def test_key_facts():
    h = load_accelerator("fp8-hopper")
    assert h.input == load_format("fp8_e4m3fn") and h.weight == h.input
    assert h.narrow == FloatFormat(8, 13) and h.narrow_rounding == "rz"
    assert h.wide == load_format("fp32")
    assert (h.structure, h.chunk_size) == ("chunked", 128)
    d = h.describe()
    assert d["narrow"] == {"format": "e8m13", "rounding": "rz"}
    assert d["structure"] == {"kind": "chunked", "chunk_size": 128, "promotion": "outside"}

    t = load_accelerator("tensorcore-4term")
    assert (t.structure, t.terms, t.guard_bits, t.align_rounding) == ("fused", 4, 3, "rz")
    assert t.narrow == load_format("fp32") and t.narrow_rounding == "rz"
    assert t.describe()["structure"] == {"kind": "fused", "terms": 4, "guard_bits": 3,
                                         "align_rounding": "rz"}

    s = load_accelerator("int8-int16acc-sat")
    assert s.narrow == IntFormat(16, overflow="saturate")
    assert s.describe()["narrow"]["format"] == "int16_sat"
    w = load_accelerator("int8-int16acc-wrap")
    assert w.narrow == IntFormat(16) and w.wide == IntFormat(32)
    assert load_accelerator("int8-int32acc").wide == IntFormat(64)
    assert load_accelerator("fp16-fp16acc").narrow == load_format("fp16")


def test_matmul_kwargs():
    h = load_accelerator("fp8-hopper")
    assert h.matmul_kwargs() == {
        "acc": FloatFormat(8, 13), "rounding": "rz", "structure": "chunked",
        "product": "exact", "chunk_size": 128, "wide": load_format("fp32"),
        "wide_rounding": "rne"}
    assert h.matmul_kwargs("wide") == {"acc": load_format("fp32"), "rounding": "rne",
                                       "structure": "sequential", "product": "exact"}
    t = load_accelerator("tensorcore-4term")
    kw = t.matmul_kwargs("narrow")
    assert (kw["structure"], kw["terms"], kw["guard_bits"], kw["align_rounding"]) == \
        ("fused", 4, 3, "rz")
    assert "chunk_size" not in kw and "wide" not in kw
    r = dataclasses.replace(load_accelerator("fp16-fp32acc"), product="rounded",
                            product_format=load_format("fp16"))
    kw = r.matmul_kwargs()
    assert kw["product"] == load_format("fp16") and kw["product_rounding"] == "rne"
    with pytest.raises(ValueError, match="which"):
        t.matmul_kwargs("medium")


@pytest.mark.parametrize("name", BUILTINS)
def test_matmul_kwargs_describe_the_datapath(name):
    """matmul_kwargs is derived from datapath: the keywords give the same datapath (less
    the operand formats, which keywords do not carry)."""
    acc = load_accelerator(name)
    for which in ("narrow", "wide"):
        dp = acc.datapath(which)
        assert (dp.input, dp.weight) == (acc.input, acc.weight)
        assert Datapath.of(**acc.matmul_kwargs(which)) == dataclasses.replace(
            dp, input=None, weight=None)


def test_inline_formats_overrides_and_defaults(tmp_path):
    doc = edited(
        name="mine",
        operands={"input": {"type": "float", "exp_bits": 5, "man_bits": 10},
                  "weight": "e4m3fn"},
        product={"mode": "rounded", "format": "fp16"},
        narrow={"format": "fp16", "rounding": "rz", "overflow": "saturate"},
        structure=None)
    acc = load_accelerator(write(tmp_path, doc))
    assert acc.name == "mine"
    assert acc.input == load_format("fp16")
    assert acc.narrow == FloatFormat(5, 10, overflow="saturate")
    assert acc.structure == "sequential"
    assert acc.product_rounding is None and acc.effective_product_rounding == "rz"
    assert acc.source == str(tmp_path / "x.yaml")
    assert load_accelerator(write(tmp_path, acc.describe(), "z.yaml")) == acc
    # name defaults to the file stem; a format path is relative to the accelerator file
    (tmp_path / "nf.yaml").write_text(
        "kind: number_format\nversion: 1\ntype: float\nexp_bits: 5\nman_bits: 7\n")
    doc = edited(narrow={"format": "nf.yaml"}, wide={"format": "fp32"})
    acc = load_accelerator(write(tmp_path, doc, "stem-name.yaml"))
    assert acc.name == "stem-name" and acc.narrow == FloatFormat(5, 7)
    assert acc.narrow_rounding == "rne" and acc.wide_rounding == "rne"


# ---- bad documents: ValueError naming file and key path -----------------------------

BAD = [
    ("misspelt top-level key", dict(strucutre={"kind": "sequential"}), "strucutre",
     "unknown key"),
    ("misspelt nested key",
     dict(structure={"kind": "chunked", "chunk_sise": 32}), "structure.chunk_sise",
     "unknown key"),
    ("misspelt array key", dict(array={"rows": 8, "colls": 8, "dataflow": "os",
                                       "clock_ghz": 1}), "array.colls", "unknown key"),
    ("wrong kind", dict(kind="number_format"), "kind", "expected 'accelerator'"),
    ("version 2", dict(version=2), "version", "expected 1"),
    ("chunk_size 0", dict(structure={"kind": "chunked", "chunk_size": 0}),
     "structure.chunk_size", "expected a positive integer, got 0"),
    ("chunk_size wrong type", dict(structure={"kind": "chunked", "chunk_size": "128"}),
     "structure.chunk_size", "expected a positive integer"),
    ("chunked without chunk_size", dict(structure={"kind": "chunked"}),
     "structure.chunk_size", "missing"),
    ("chunk_size with sequential", dict(structure={"kind": "sequential", "chunk_size": 4}),
     "structure.chunk_size", "only used by structure kind 'chunked'"),
    ("terms with chunked", dict(structure={"kind": "chunked", "chunk_size": 4, "terms": 4}),
     "structure.terms", "only used by structure kind 'fused'"),
    ("fused without guard_bits", dict(structure={"kind": "fused", "terms": 4}),
     "structure.guard_bits", "missing"),
    ("unknown structure", dict(structure={"kind": "systolic"}), "structure.kind",
     "expected one of sequential, chunked, tree, fused"),
    ("unknown format name", dict(operands={"input": "fp17", "weight": "fp16"}),
     "operands.input", "unknown format 'fp17'"),
    ("bad inline format", dict(narrow={"format": {"type": "float", "exp_bits": 5,
                                                  "man_bits": 99}}),
     "narrow.format.man_bits", "expected an integer in [0, 52]"),
    ("rounded product without format", dict(product={"mode": "rounded"}), "product.format",
     "missing"),
    ("product format without rounded", dict(product={"mode": "exact", "format": "fp16"}),
     "product.format", "only used by product mode 'rounded'"),
    ("unknown product mode", dict(product={"mode": "approximate"}), "product.mode",
     "expected one of exact, fused, rounded"),
    ("bad rounding", dict(narrow={"format": "fp16", "rounding": "nearest"}),
     "narrow.rounding", "expected one of rne"),
    ("int overflow policy on a float", dict(narrow={"format": "fp16", "overflow": "wrap"}),
     "narrow.overflow", "expected one of inf, saturate"),
    ("overflow a format cannot have",
     dict(narrow={"format": "fp4_e2m1fn", "overflow": "inf"}, wide={"format": "fp16"}),
     "narrow.overflow", "saturate"),
    ("wide narrower than narrow", dict(wide={"format": "bf16"}), "wide.format",
     "fewer fraction bits"),
    ("float wide for an int accumulator",
     dict(operands={"input": "int8", "weight": "int8"}, narrow={"format": "int16"},
          structure=None), "wide.format", "integer/fixed-point"),
    ("float operands with an int accumulator",
     dict(narrow={"format": "int16"}, wide={"format": "int32"}, structure=None),
     "operands.input", "needs integer or fixed-point operands"),
    ("tree on an int accumulator",
     dict(operands={"input": "int8", "weight": "int8"}, narrow={"format": "int16"},
          wide={"format": "int32"}, structure={"kind": "tree"}), "structure.kind",
     "supports sequential or chunked"),
    ("rounded product into an int accumulator",
     dict(operands={"input": "int8", "weight": "int8"}, narrow={"format": "int16"},
          wide={"format": "int32"}, structure=None,
          product={"mode": "rounded", "format": "int8"}), "product.mode",
     "takes exact products"),
    ("dataflow", dict(array={"rows": 8, "cols": 8, "dataflow": "rs", "clock_ghz": 1}),
     "array.dataflow", "expected one of os, ws, is"),
    ("clock", dict(array={"rows": 8, "cols": 8, "dataflow": "os", "clock_ghz": -1}),
     "array.clock_ghz", "expected a positive number"),
    ("rows bool", dict(array={"rows": True, "cols": 8, "dataflow": "os", "clock_ghz": 1}),
     "array.rows", "expected a positive integer"),
    ("missing array", dict(array=None), "array", "missing"),
    ("operands not a mapping", dict(operands="fp16"), "operands", "expected a mapping"),
]


@pytest.mark.parametrize("label,changes,key,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_document(tmp_path, label, changes, key, fragment):
    p = write(tmp_path, edited(**changes))
    with pytest.raises(ValueError) as info:
        load_accelerator(p)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: key '{key}': "), msg
    assert fragment in msg, msg


def test_valid_document_loads(tmp_path):
    acc = load_accelerator(write(tmp_path, VALID))
    assert (acc.structure, acc.chunk_size, acc.narrow) == ("chunked", 32, load_format("fp16"))


def test_missing_file_and_unknown_name(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(ValueError, match=f"^{p}: file not found$"):
        load_accelerator(p)
    with pytest.raises(ValueError, match="unknown accelerator 'nope'"):
        load_accelerator("nope")
    with pytest.raises(ValueError, match="expected a name or path"):
        load_accelerator(3)


def test_invalid_yaml(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("kind: accelerator\nversion: [1\n")
    with pytest.raises(ValueError, match=f"^{p}:.*invalid YAML"):
        load_accelerator(p)


def test_python_construction_is_validated():
    fp16, fp32 = load_format("fp16"), load_format("fp32")
    acc = Accelerator(fp16, fp16, fp16, fp32)
    assert (acc.structure, acc.rows, acc.cols, acc.clock_ghz) == ("sequential", 1, 1, 1.0)
    with pytest.raises(ValueError, match="^chunk_size: only used by structure 'chunked'"):
        Accelerator(fp16, fp16, fp16, fp32, chunk_size=4)
    with pytest.raises(ValueError, match="^chunk_size: missing"):
        dataclasses.replace(acc, structure="chunked")
    with pytest.raises(ValueError, match="^wide: "):
        Accelerator(fp16, fp16, fp32, fp16)
    with pytest.raises(ValueError, match="^narrow: expected a FloatFormat"):
        Accelerator(fp16, fp16, "fp16", fp32)
    fused = Accelerator(fp16, fp16, fp32, fp32, structure="fused", terms=4, guard_bits=0)
    assert fused.align_rounding == "rz"
    with pytest.raises(ValueError, match="^guard_bits: expected an integer in"):
        dataclasses.replace(fused, guard_bits=-1)


# ---- CLI ----------------------------------------------------------------------------

def test_cli_list(capsys):
    assert main(["accelerators", "list"]) == 0
    assert capsys.readouterr().out.split() == sorted(BUILTINS)


def test_cli_show(capsys):
    assert main(["accelerators", "show", "fp8-hopper"]) == 0
    out = capsys.readouterr().out
    assert "name: fp8-hopper" in out
    assert "chunk_size: 128" in out
    assert "  format: e8m13" in out
    assert main(["accelerators", "show", "tensorcore-4term", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["structure"]["terms"] == 4
    assert d["operands"] == {"input": "fp16", "weight": "fp16"}


def test_cli_show_path(capsys, tmp_path):
    p = write(tmp_path, VALID)
    assert main(["accelerators", "show", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "x"


@pytest.mark.parametrize("args", [
    ["accelerators", "show", "no/such/file.yaml"],
    ["accelerators", "show", "no-such-accelerator"],
    ["accelerators", "show"],
])
def test_cli_errors(capsys, args):
    assert main(args) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0]


def test_cli_bad_key(capsys, tmp_path):
    p = write(tmp_path, edited(structure={"kind": "chunked", "chunk_size": 0}))
    assert main(["accelerators", "show", str(p)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert str(p) in err[0] and "structure.chunk_size" in err[0]


# ---- Accelerator.matmul -------------------------------------------------------------

def test_matmul_refuses_unrepresentable_operands():
    acc = load_accelerator("fp16-fp32acc")
    ok = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"^a: 1 entry is not representable in the input "
                                         r"format fp16 \(first: a\[0, 1\] = 0.1\)"):
        acc.matmul(np.array([[1.0, 0.1, 2.0], [0, 0, 0]]), ok.T)
    i8 = load_accelerator("int8-int32acc")
    with pytest.raises(ValueError, match=r"^b: 2 entries are not representable in the weight "
                                         r"format int8"):
        i8.matmul(ok, np.array([[1, 200], [3, 4], [5, -129]], dtype=float))
    with pytest.raises(ValueError, match=r"^b: not representable in the weight format int8"):
        i8.matmul(ok, np.array([[1, np.nan], [3, 4], [5, 6]]))


def _small_ints(rng, shape, lo, hi):
    return rng.integers(lo, hi + 1, size=shape).astype(np.float64)


@pytest.mark.parametrize("name", ["fp16-fp32acc", "bf16-fp32acc", "fp8-e4m3-fp16acc",
                                  "fp8-hopper", "tensorcore-4term", "fp16-fp16acc"])
def test_float_matmul_exact_on_small_integers(name):
    # |entries| <= 2 and K = 260: every partial sum (prefix, chunk, tree node or fused
    # step) is an integer of magnitude <= 1040 < 2^11, exact in every accumulator here,
    # so all structures give the float64 product exactly. K > 2 * 128 gives fp8-hopper
    # three chunks.
    rng = np.random.default_rng(1)
    a = _small_ints(rng, (5, 260), -2, 2)
    b = _small_ints(rng, (260, 7), -2, 2)
    ref = a @ b
    acc = load_accelerator(name)
    for which in ("narrow", "wide"):
        out = acc.matmul(a, b, which=which)
        np.testing.assert_array_equal(out.values, ref)


def test_fp16_accumulator_rounds_every_add():
    # Oracle: s <- fl16(s + p) with the add done exactly in float64 (all values are
    # integers below 2^16) and numpy's correctly rounded float64 -> float16 cast (RNE).
    # Sums stay below 64 * 30^2 = 57600 < 65504: no overflow.
    rng = np.random.default_rng(2)
    a = _small_ints(rng, (4, 64), 0, 30)
    b = _small_ints(rng, (64, 3), 0, 30)
    ref = np.zeros((4, 3))
    for i in range(4):
        for j in range(3):
            s = np.float16(0)
            for k in range(64):
                s = np.float16(float(s) + a[i, k] * b[k, j])
            ref[i, j] = float(s)
    assert not np.array_equal(ref, a @ b)  # the fp16 accumulator did round
    acc = load_accelerator("fp16-fp16acc")
    np.testing.assert_array_equal(acc.matmul(a, b).values, ref)
    np.testing.assert_array_equal(acc.matmul(a, b, which="wide").values, a @ b)


def _int_reference(a, b, bits, overflow):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            s = 0
            for t in range(k):
                s += int(a[i, t]) * int(b[t, j])
                if overflow == "saturate":
                    s = min(max(s, lo), hi)
                else:
                    s = (s - lo) % (1 << bits) + lo
            out[i, j] = s
    return out


def test_int16_accumulators_wrap_and_saturate():
    rng = np.random.default_rng(3)
    a = _small_ints(rng, (6, 40), -128, 127)
    b = _small_ints(rng, (40, 5), -128, 127)
    # a row whose running sum saturates and then comes back into range:
    # 16129, 32258, 32767 (clamped; exact 48387), 16511 -- the exact sum is 32131.
    a[0, :4] = [127, 127, 127, -128]
    a[0, 4:] = 0
    b[:4, 0] = 127
    exact = a @ b
    assert np.abs(exact).max() > 32767  # some outputs overflow int16

    wrap = load_accelerator("int8-int16acc-wrap")
    ref_wrap = _int_reference(a, b, 16, "wrap")
    np.testing.assert_array_equal(wrap.matmul(a, b).values, ref_wrap)
    sat = load_accelerator("int8-int16acc-sat")
    ref_sat = _int_reference(a, b, 16, "saturate")
    assert ref_sat[0, 0] == 16511 and ref_wrap[0, 0] == 32131
    np.testing.assert_array_equal(sat.matmul(a, b).values, ref_sat)
    # the wide datapaths (int32) and int8-int32acc hold every sum exactly
    np.testing.assert_array_equal(sat.matmul(a, b, which="wide").values, exact)
    np.testing.assert_array_equal(load_accelerator("int8-int32acc").matmul(a, b).values,
                                  exact)
