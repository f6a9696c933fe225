"""Number formats: derived properties, value semantics, validation, the registry and YAML.

Oracles: published constants of the named formats (IEEE 754, OCP 8-bit FP and MX
specifications), gfloat's FormatInfo, and the
bit-pattern enumeration in tests/oracles.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import gfloat.formats as gf
import numpy as np
import pytest
import yaml

import accsim
from accsim import FixedFormat, FloatFormat, IntFormat
from oracles import FloatSpec, enumerate_values


def _ieee_num_values(e, m):
    """Finite values of an IEEE-style format (+-0 once): 2 * positives + 1."""
    return 2 * ((2 ** e - 2) * 2 ** m + 2 ** m - 1) + 1


# name: (exp_bits, man_bits, specials, overflow, max_finite, num_values, min_subnormal)
FLOAT_BUILTINS = {
    "fp64": (11, 52, "ieee", "inf", np.finfo(np.float64).max, _ieee_num_values(11, 52),
             5e-324),
    "fp32": (8, 23, "ieee", "inf", float(np.finfo(np.float32).max), 4278190079,
             2.0 ** -149),
    "tf32": (8, 10, "ieee", "inf", (2 - 2.0 ** -10) * 2.0 ** 127, _ieee_num_values(8, 10),
             2.0 ** -136),
    "fp16": (5, 10, "ieee", "inf", 65504.0, 63487, 2.0 ** -24),
    "bf16": (8, 7, "ieee", "inf", 3.3895313892515355e38, 65279, 2.0 ** -133),
    "fp8_e4m3fn": (4, 3, "fn", "inf", 448.0, 253, 2.0 ** -9),
    "fp8_e5m2": (5, 2, "ieee", "inf", 57344.0, 247, 2.0 ** -16),
    "fp8_e4m3": (4, 3, "ieee", "inf", 240.0, 239, 2.0 ** -9),
    "fp8_e4m3fnuz": (4, 3, "fnuz", "inf", 240.0, 255, 2.0 ** -10),
    "fp8_e5m2fnuz": (5, 2, "fnuz", "inf", 57344.0, 255, 2.0 ** -17),
    "fp6_e3m2fn": (3, 2, "none", "saturate", 28.0, 63, 2.0 ** -4),
    "fp6_e2m3fn": (2, 3, "none", "saturate", 7.5, 63, 2.0 ** -3),
    "fp4_e2m1fn": (2, 1, "none", "saturate", 6.0, 15, 0.5),
    "e5m7": (5, 7, "ieee", "inf", 65280.0, _ieee_num_values(5, 7), 2.0 ** -21),
    "e8m13": (8, 13, "ieee", "inf", (2 - 2.0 ** -13) * 2.0 ** 127, _ieee_num_values(8, 13),
              2.0 ** -139),
}

# name: (class, bits, frac_bits, signed, overflow)
INT_BUILTINS = {
    "int4": (IntFormat, 4, 0, True, "wrap"),
    "int8": (IntFormat, 8, 0, True, "wrap"),
    "int16": (IntFormat, 16, 0, True, "wrap"),
    "int24": (IntFormat, 24, 0, True, "wrap"),
    "int32": (IntFormat, 32, 0, True, "wrap"),
    "int16_sat": (IntFormat, 16, 0, True, "saturate"),
    "uint8": (IntFormat, 8, 0, False, "wrap"),
    "q8_8": (FixedFormat, 16, 8, True, "saturate"),
    "q16_16": (FixedFormat, 32, 16, True, "wrap"),
}


def test_builtin_list():
    names = accsim.list_formats()
    assert names == sorted(names)
    assert set(FLOAT_BUILTINS) | set(INT_BUILTINS) <= set(names)


@pytest.mark.parametrize("name", sorted(FLOAT_BUILTINS))
def test_float_builtin_constants(name):
    e, m, specials, ovf, big, nvals, tiny = FLOAT_BUILTINS[name]
    f = accsim.load_format(name)
    assert isinstance(f, FloatFormat) and f.kind == "float"
    assert (f.exp_bits, f.man_bits, f.specials, f.overflow) == (e, m, specials, ovf)
    assert f.subnormals is True
    assert f.name == name
    assert f.max_finite == big
    assert f.num_values == nvals
    assert f.min_subnormal == tiny == f.min_positive
    assert f.bits == 1 + e + m
    assert f.precision == m + 1
    assert f.unit_roundoff == 2.0 ** -(m + 1)
    assert f.min_normal == 2.0 ** f.emin
    assert f.emin == 1 - f.bias
    assert f.has_inf == (specials == "ieee")
    assert f.has_nan == (specials != "none")
    assert f.has_negative_zero == (specials != "fnuz")
    # max_finite has exponent emax
    assert 1 <= math.ldexp(f.max_finite, -f.emax) < 2
    spec = FloatSpec(e, m, specials=specials, overflow=ovf)
    assert f.bias == spec.bias and f.emax == spec.emax
    if f.bits <= 8:
        vals = enumerate_values(spec)
        assert vals.size == nvals and vals.max() == big


def test_against_gfloat_formatinfo():
    """Oracle: gfloat's independent FormatInfo for the OCP / IEEE formats."""
    pairs = {"fp8_e4m3fn": gf.format_info_ocp_e4m3, "fp8_e5m2": gf.format_info_ocp_e5m2,
             "fp6_e3m2fn": gf.format_info_ocp_e3m2, "fp6_e2m3fn": gf.format_info_ocp_e2m3,
             "fp4_e2m1fn": gf.format_info_ocp_e2m1, "fp16": gf.format_info_binary16,
             "bf16": gf.format_info_bfloat16, "fp32": gf.format_info_binary32,
             "fp64": gf.format_info_binary64}
    for name, fi in pairs.items():
        f = accsim.load_format(name)
        assert f.max_finite == fi.max, name
        assert f.min_subnormal == fi.smallest_subnormal, name
        assert f.min_normal == fi.smallest_normal, name
        assert f.precision == fi.precision, name
        assert f.bits == fi.k, name
        assert f.has_inf == (fi.num_infs > 0), name
        assert f.has_nan == (fi.num_nans > 0), name


@pytest.mark.parametrize("name", sorted(INT_BUILTINS))
def test_int_builtins(name):
    cls, bits, frac, signed, ovf = INT_BUILTINS[name]
    f = accsim.load_format(name)
    assert type(f) is cls
    assert (f.bits, f.frac_bits, f.signed, f.overflow) == (bits, frac, signed, ovf)
    lo = -(2 ** (bits - 1)) if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    assert (f.min_int, f.max_int) == (lo, hi)
    assert f.resolution == 2.0 ** -frac
    assert f.max_finite == hi * 2.0 ** -frac
    assert f.min_value == lo * 2.0 ** -frac
    assert f.num_values == 2 ** bits
    assert f.kind == ("int" if cls is IntFormat else "fixed")


def test_all_builtins_load_and_describe():
    for name in accsim.list_formats():
        f = accsim.load_format(name)
        d = f.describe()
        json.dumps(d)  # plain data
        assert d["name"] == name
        assert d["kind"] == f.kind
        assert d["max_finite"] == f.max_finite
        assert d["num_values"] == f.num_values


def test_describe_float_fields():
    f = accsim.load_format("fp8_e4m3fnuz")
    d = f.describe()
    for key in ("exp_bits", "man_bits", "bias", "subnormals", "specials", "overflow", "bits",
                "precision", "emin", "emax", "max_finite", "min_normal", "min_subnormal",
                "unit_roundoff", "num_values"):
        assert d[key] == getattr(f, key), key
    assert d["bias"] == 8 and d["max_finite"] == 240.0
    assert FloatFormat(5, 10, subnormals=False).describe()["min_subnormal"] is None


def test_integer_properties():
    f = IntFormat(64)
    assert f.max_int == 2 ** 63 - 1 and f.min_int == -(2 ** 63)
    assert f.min_value == -(2.0 ** 63) and f.num_values == 2 ** 64
    u = IntFormat(64, signed=False)
    assert u.max_int == 2 ** 64 - 1 and u.min_int == 0 and u.min_value == 0.0
    q = FixedFormat(8, -2)  # multiples of 4
    assert q.resolution == 4.0 and q.max_finite == 508.0 and q.min_value == -512.0
    q = FixedFormat(8, 12, signed=False)
    assert q.resolution == 2.0 ** -12 and q.max_finite == 255 * 2.0 ** -12
    assert IntFormat(2).min_int == -2 and IntFormat(2).max_int == 1
    assert IntFormat(8).frac_bits == 0


def test_subnormals_off_properties():
    f = FloatFormat(5, 10, subnormals=False)
    assert f.min_subnormal is None
    assert f.min_positive == f.min_normal == 2.0 ** -14
    assert f.num_values == 2 * 30 * 1024 + 1


def test_default_bias_and_explicit_bias():
    assert FloatFormat(4, 3).bias == 7
    assert FloatFormat(4, 3, specials="fnuz").bias == 8
    assert FloatFormat(5, 2, specials="fnuz").bias == 16
    assert FloatFormat(4, 3, bias=7) == FloatFormat(4, 3)
    f = FloatFormat(4, 3, bias=3)
    assert f.emin == -2 and f.emax == 11 and f.max_finite == 15 * 2.0 ** 8


# ---------------------------------------------------------------------------------------
# value semantics


def test_equality_ignores_name_and_hash():
    a = FloatFormat(5, 10)
    b = accsim.load_format("fp16")
    c = FloatFormat(5, 10, name="half")
    assert a == b == c and hash(a) == hash(b) == hash(c)
    assert len({a, b, c}) == 1
    assert {a: 1}[b] == 1
    assert a != FloatFormat(5, 10, subnormals=False)
    assert a != FloatFormat(5, 10, overflow="saturate")
    assert FloatFormat(4, 3, specials="fn") != FloatFormat(4, 3)
    assert FloatFormat(4, 3, bias=6) != FloatFormat(4, 3)
    assert IntFormat(8) == IntFormat(8, name="x") == accsim.load_format("int8")
    assert hash(IntFormat(8)) == hash(accsim.load_format("int8"))
    assert IntFormat(8) != IntFormat(8, signed=False)
    assert IntFormat(8) != IntFormat(8, overflow="saturate")
    assert FixedFormat(16, 8, overflow="saturate") == accsim.load_format("q8_8")
    assert FixedFormat(16, 8) != FixedFormat(16, 7)
    assert a != IntFormat(16) and a != "fp16"


@pytest.mark.parametrize("fmt", [
    FloatFormat(5, 10), FloatFormat(4, 3, specials="fn", name="e4m3fn"),
    FloatFormat(4, 3, specials="fnuz", overflow="saturate", subnormals=False),
    FloatFormat(4, 3, bias=3), FloatFormat(2, 1, specials="none", overflow="saturate"),
    IntFormat(8), IntFormat(12, signed=False, overflow="saturate", name="u12"),
    FixedFormat(16, 8), FixedFormat(32, -4, signed=False, overflow="saturate"),
])
def test_repr_round_trip(fmt):
    ns = {"FloatFormat": FloatFormat, "IntFormat": IntFormat, "FixedFormat": FixedFormat}
    r = repr(fmt)
    assert r.startswith(type(fmt).__name__ + "(")
    back = eval(r, ns)  # noqa: S307 - our own repr
    assert back == fmt and back.name == fmt.name


def test_frozen():
    f = FloatFormat(5, 10)
    with pytest.raises(AttributeError):
        f.man_bits = 3
    with pytest.raises(AttributeError):
        IntFormat(8).bits = 9
    with pytest.raises(AttributeError):
        FixedFormat(8, 2).frac_bits = 3
    g = dataclasses.replace(f, man_bits=7)
    assert g == FloatFormat(5, 7) and f.man_bits == 10


# ---------------------------------------------------------------------------------------
# validation: ValueError naming the offending field

BAD_SPECS = [
    (lambda: FloatFormat(0, 3), "exp_bits"),
    (lambda: FloatFormat(12, 3), "exp_bits"),
    (lambda: FloatFormat(4, 60), "man_bits"),
    (lambda: FloatFormat(4, -1), "man_bits"),
    (lambda: FloatFormat(4.0, 3), "exp_bits"),
    (lambda: FloatFormat(True, 3), "exp_bits"),
    (lambda: FloatFormat(4, "3"), "man_bits"),
    (lambda: FloatFormat(4, 3, specials="ocp"), "specials"),
    (lambda: FloatFormat(4, 3, overflow="wrap"), "overflow"),
    (lambda: FloatFormat(4, 3, overflow="clamp"), "overflow"),
    (lambda: FloatFormat(2, 1, specials="none"), "overflow"),
    (lambda: FloatFormat(1, 3), "exp_bits"),  # IEEE needs an exponent field of 2+ bits
    (lambda: FloatFormat(4, 3, subnormals="yes"), "subnormals"),
    (lambda: FloatFormat(4, 3, bias=1.5), "bias"),
    (lambda: FloatFormat(4, 3, name=3), "name"),
    (lambda: FloatFormat(11, 10, specials="none", overflow="saturate"), "emax"),  # 2**1024
    (lambda: FloatFormat(8, 3, bias=-1000), "emax"),
    (lambda: FloatFormat(11, 52, bias=1100), "1074"),  # below float64's smallest
    (lambda: IntFormat(1), "bits"),
    (lambda: IntFormat(65), "bits"),
    (lambda: IntFormat(8.0), "bits"),
    (lambda: IntFormat(8, overflow="inf"), "overflow"),
    (lambda: IntFormat(8, signed="no"), "signed"),
    (lambda: FixedFormat(8, 2.5), "frac_bits"),
    (lambda: FixedFormat(0, 2), "bits"),
    (lambda: FixedFormat(16, 8, overflow="nan"), "overflow"),
]


@pytest.mark.parametrize("make,field", BAD_SPECS, ids=[f"{i}-{b[1]}" for i, b in
                                                       enumerate(BAD_SPECS)])
def test_bad_specs(make, field):
    with pytest.raises(ValueError) as info:
        make()
    assert field in str(info.value)
    assert "\n" not in str(info.value)


def test_tiny_valid_formats():
    """Edge formats that are valid: one exponent bit (fn / fnuz / none), no fraction."""
    f = FloatFormat(1, 2, specials="fn")
    assert f.max_finite == 3.0 and f.num_values == enumerate_values(
        FloatSpec(1, 2, specials="fn")).size
    assert FloatFormat(1, 0, specials="fnuz").max_finite == 1.0
    assert FloatFormat(2, 0).max_finite == 2.0
    assert FloatFormat(11, 52) == accsim.load_format("fp64")
    with pytest.raises(ValueError):
        FloatFormat(1, 0, specials="fn")  # only zero and NaN


# ---------------------------------------------------------------------------------------
# load_format: spec strings and YAML


def test_spec_strings():
    assert accsim.load_format("e4m3fn") == FloatFormat(4, 3, specials="fn")
    assert accsim.load_format("e5m2fnuz") == FloatFormat(5, 2, specials="fnuz")
    assert accsim.load_format("e3m4") == FloatFormat(3, 4)
    assert accsim.load_format("e5m7") == FloatFormat(5, 7)
    assert accsim.load_format("int12") == IntFormat(12)
    assert accsim.load_format("uint8") == IntFormat(8, signed=False)
    assert accsim.load_format("uint12") == IntFormat(12, signed=False)
    f = FixedFormat(8, 4)
    assert accsim.load_format(f) is f
    for bad in ("fp7", "e0m3", "int1", "int99", "", "E5M2", "float16"):
        with pytest.raises(ValueError):
            accsim.load_format(bad)
    with pytest.raises(ValueError):
        accsim.load_format(16)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_yaml_float(tmp_path):
    p = _write(tmp_path, "mine.yaml", """\
kind: number_format
version: 1
description: a custom accumulator
type: float
exp_bits: 6
man_bits: 9
subnormals: false
specials: fn
overflow: saturate
bias: 30
""")
    f = accsim.load_format(p)
    assert f == FloatFormat(6, 9, subnormals=False, specials="fn", overflow="saturate",
                            bias=30)
    assert f.name == "mine"
    assert accsim.load_format(str(p)) == f


def test_yaml_int_and_fixed(tmp_path):
    p = _write(tmp_path, "acc.yaml", """\
kind: number_format
version: 1
name: acc20
type: int
bits: 20
signed: false
overflow: saturate
""")
    f = accsim.load_format(p)
    assert f == IntFormat(20, signed=False, overflow="saturate") and f.name == "acc20"
    p = _write(tmp_path, "q.yaml", """\
kind: number_format
version: 1
type: fixed
bits: 24
frac_bits: 10
""")
    assert accsim.load_format(p) == FixedFormat(24, 10)


BAD_YAML = [
    ("misspelt.yaml", "kind: number_format\nversion: 1\ntype: float\nexp_bits: 4\n"
     "man_bits: 3\nsubnormal: false\n", "subnormal"),
    ("misspelt2.yaml", "kind: number_format\nversion: 1\ntype: float\nexp_bit: 4\n"
     "man_bits: 3\n", "exp_bit"),
    ("kind.yaml", "kind: accelerator\nversion: 1\ntype: float\nexp_bits: 4\nman_bits: 3\n",
     "kind"),
    ("nokind.yaml", "version: 1\ntype: float\nexp_bits: 4\nman_bits: 3\n", "kind"),
    ("version.yaml", "kind: number_format\nversion: 2\nexp_bits: 4\nman_bits: 3\n",
     "version"),
    ("value.yaml", "kind: number_format\nversion: 1\nexp_bits: four\nman_bits: 3\n",
     "exp_bits"),
    ("range.yaml", "kind: number_format\nversion: 1\nexp_bits: 4\nman_bits: 70\n",
     "man_bits"),
    ("specials.yaml", "kind: number_format\nversion: 1\nexp_bits: 4\nman_bits: 3\n"
     "specials: ocp\n", "specials"),
    ("type.yaml", "kind: number_format\nversion: 1\ntype: posit\nbits: 8\n", "type"),
    ("intkey.yaml", "kind: number_format\nversion: 1\ntype: int\nbits: 8\nman_bits: 3\n",
     "man_bits"),
    ("bool.yaml", "kind: number_format\nversion: 1\nexp_bits: 4\nman_bits: 3\n"
     "subnormals: 1\n", "subnormals"),
    ("list.yaml", "- 1\n- 2\n", ""),
    ("syntax.yaml", "kind: number_format\nversion: [1\n", ""),
]


@pytest.mark.parametrize("fname,text,key", BAD_YAML, ids=[b[0] for b in BAD_YAML])
def test_bad_yaml(tmp_path, fname, text, key):
    p = _write(tmp_path, fname, text)
    with pytest.raises(ValueError) as info:
        accsim.load_format(p)
    msg = str(info.value)
    assert fname in msg
    assert key in msg
    assert "\n" not in msg


def test_missing_yaml_file(tmp_path):
    p = tmp_path / "nowhere.yaml"
    with pytest.raises(ValueError) as info:
        accsim.load_format(p)
    assert "nowhere.yaml" in str(info.value)


def test_builtin_yaml_files_say_what_they_are():
    here = Path(accsim.__file__).resolve().parent
    dirs = [here / "formats" / "numbers", here.parent / "formats" / "numbers"]
    d = next(x for x in dirs if x.is_dir())
    files = sorted(d.glob("*.yaml"))
    assert {p.stem for p in files} == set(accsim.list_formats())
    for p in files:
        doc = yaml.safe_load(p.read_text())
        assert doc["kind"] == "number_format" and doc["version"] == 1, p
        assert doc.get("name", p.stem) == p.stem, p


def test_rounding_modes_constant():
    assert accsim.ROUNDING_MODES == ("rne", "rna", "rz", "ru", "rd", "ro", "sr")


def test_unit_roundoff_directed_note():
    # u = 2**-p for round to nearest; relative error of rne bounded by u (check on fp16)
    f = accsim.load_format("fp16")
    rng = np.random.default_rng(0)
    x = rng.uniform(1e-3, 6e4, 10_000)
    q = accsim.quantize(x, f)
    assert np.max(np.abs(q - x) / np.abs(x)) <= f.unit_roundoff
    assert math.isclose(f.unit_roundoff, 2.0 ** -11)
