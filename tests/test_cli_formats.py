"""CLI: ``accsim formats list|show`` and ``accsim quantize``.

Oracles: the library API for listings, numpy float16 casts / the exact rational oracle
for quantized values (parsed back from the printed text, bit for bit), and the rule
"every user error is one line on stderr and exit code 2, no traceback".
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import accsim
from accsim.cli import main
from oracles import FloatSpec, as_bits, round_float_exact


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc, out, err):
    assert rc == 2
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], err
    assert "Traceback" not in err
    return lines[0]


def test_formats_list(capsys):
    rc, out, err = run(capsys, "formats", "list")
    assert rc == 0 and err == ""
    assert out.splitlines() == accsim.list_formats()


def test_formats_show_text(capsys):
    rc, out, err = run(capsys, "formats", "show", "fp16")
    assert rc == 0 and err == ""
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["max_finite"].strip() == "65504"
    assert fields["exp_bits"].strip() == "5" and fields["man_bits"].strip() == "10"
    assert fields["num_values"].strip() == "63487"
    assert float(fields["min_subnormal"]) == 2.0 ** -24


@pytest.mark.parametrize("name", ["fp8_e4m3fn", "fp8_e4m3fnuz", "fp4_e2m1fn", "int16_sat",
                                  "q8_8", "e5m7", "e4m3fn", "int12", "uint12"])
def test_formats_show_json(capsys, name):
    rc, out, err = run(capsys, "formats", "show", name, "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)
    assert d == json.loads(json.dumps(accsim.load_format(name).describe()))


def test_formats_show_json_values(capsys):
    _, out, _ = run(capsys, "formats", "show", "fp8_e4m3fn", "--json")
    d = json.loads(out)
    assert d["max_finite"] == 448 and d["num_values"] == 253 and d["specials"] == "fn"
    _, out, _ = run(capsys, "formats", "show", "int12", "--json")
    d = json.loads(out)
    assert d["kind"] == "int" and d["bits"] == 12 and d["min_int"] == -2048


def test_formats_show_yaml_path(capsys, tmp_path):
    p = tmp_path / "acc13.yaml"
    p.write_text("kind: number_format\nversion: 1\ntype: float\nexp_bits: 5\nman_bits: 7\n"
                 "overflow: saturate\n")
    rc, out, err = run(capsys, "formats", "show", str(p), "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["overflow"] == "saturate" and d["max_finite"] == 65280 and d["name"] == "acc13"


def _parse(out):
    return np.array([float(line) for line in out.splitlines()])


def test_quantize_values_exact(capsys):
    """Each printed result parses back to the exact float64 the oracle gives."""
    vals = ["0.1", "1e6", "65519.99", "3.14159", "6e-8", "2.9802322387695312e-08", "1e-30",
            "0", "inf", "nan", "0.333333333333333333"]
    rc, out, err = run(capsys, "quantize", "--format", "fp16", *vals)
    assert rc == 0 and err == ""
    got = _parse(out)
    want = np.array([float(v) for v in vals])
    with np.errstate(over="ignore"):
        want = want.astype(np.float16).astype(np.float64)
    assert (as_bits(got) == as_bits(want)).all(), out
    assert len(out.splitlines()) == len(vals)


def test_quantize_negative_values(capsys):
    """Negative values, including exponent notation and -inf, are values, not options."""
    vals = ["-1.5", "-0", "-1e-9", "-2E3", "-inf", "-3.0e0"]
    rc, out, err = run(capsys, "quantize", "--format", "fp16", *vals)
    assert rc == 0, err
    got = _parse(out)
    want = [-1.5, -0.0, -0.0, -2000.0, -math.inf, -3.0]
    assert (as_bits(got) == as_bits(want)).all(), out


@pytest.mark.parametrize("mode", ["rne", "rna", "rz", "ru", "rd", "ro"])
def test_quantize_modes_and_hex(capsys, mode):
    spec = FloatSpec(4, 3, specials="fn")
    vals = [0.1, -0.1, 464.0, 449.0, 17.0, -17.0, 2.0 ** -10, 1.0]
    rc, out, err = run(capsys, "quantize", "-f", "fp8_e4m3fn", "--rounding", mode, "--hex",
                       *[repr(v) for v in vals])
    assert rc == 0 and err == ""
    lines = out.splitlines()
    want = [round_float_exact(v, spec, mode) for v in vals]
    assert len(lines) == len(vals)
    for line, w in zip(lines, want):
        if math.isnan(w):
            assert line == "nan"
        else:
            assert line == w.hex(), (mode, lines)


def test_quantize_integer_format(capsys):
    rc, out, err = run(capsys, "quantize", "--format", "int8", "300", "-2.5", "127.5", "-0.2")
    assert rc == 0
    assert out.splitlines() == ["44", "-2", "-128", "0"]
    rc, out, err = run(capsys, "quantize", "--format", "q8_8", "1000", "0.33333")
    assert rc == 0
    assert _parse(out).tolist() == [32767 / 256, 85 / 256]


def test_quantize_stochastic(capsys):
    args = ["quantize", "--format", "fp16", "--rounding", "sr", "--seed", "7"]
    vals = [repr(1 + k * 2.0 ** -13) for k in range(40)]
    rc1, out1, _ = run(capsys, *args, *vals)
    rc2, out2, _ = run(capsys, *args, *vals)
    assert rc1 == rc2 == 0 and out1 == out2
    got = _parse(out1)
    x = np.array([float(v) for v in vals])
    ulp = 2.0 ** -10
    assert np.all((got == np.floor(x / ulp) * ulp) | (got == np.ceil(x / ulp) * ulp))
    rc, out, _ = run(capsys, *args, "--sr-bits", "1", repr(1 + 0.3 * ulp))
    assert rc == 0 and float(out) == 1.0  # remainder below 2**-1 ulp never rounds up


@pytest.mark.parametrize("argv", [
    ["quantize", "--format", "fp7", "1"],
    ["quantize", "--format", "fp16", "abc"],
    ["quantize", "--format", "fp16", "--rounding", "nearest", "1"],
    ["quantize", "--format", "fp4_e2m1fn", "nan"],
    ["quantize", "--format", "int8", "inf"],
    ["quantize", "--format", "fp16", "--sr-bits", "4", "1"],
    ["quantize", "--format", "fp16", "--rounding", "sr", "--sr-bits", "0", "1"],
    ["quantize", "--format", "fp16", "--rounding", "sr", "--seed", "-3", "1"],
    ["quantize", "--format", "fp16"],
    ["quantize", "1.0"],
    ["formats", "show"],
    ["formats", "show", "no_such_format"],
    ["formats", "show", "missing/file.yaml"],
    ["formats", "frobnicate"],
    ["no-such-command"],
    ["quantize", "--format", "uint64", "--", "-1"],  # 2**64 - 1: not a float64
])
def test_errors_are_one_line(capsys, argv):
    rc, out, err = run(capsys, *argv)
    _one_line_error(rc, out, err)


def test_error_names_yaml_file_and_key(capsys, tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("kind: number_format\nversion: 1\nexp_bits: 4\nman_bits: 3\nsubnormal: no\n")
    rc, out, err = run(capsys, "formats", "show", str(p))
    line = _one_line_error(rc, out, err)
    assert "typo.yaml" in line and "subnormal" in line
    rc, out, err = run(capsys, "quantize", "--format", str(p), "1")
    line = _one_line_error(rc, out, err)
    assert "typo.yaml" in line


def test_console_script():
    """The installed ``accsim`` entry point runs main()."""
    exe = Path(sys.executable).with_name("accsim")
    assert exe.exists()
    res = subprocess.run([str(exe), "quantize", "--format", "fp8_e4m3fn", "1e9", "0.3"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["nan", "0.3125"]
