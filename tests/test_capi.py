"""The C API (libaccsim.so + accsim.h, cffi embedding) driven by examples/c/testbench.c.

The testbench is compiled with the system C compiler against the library built once per
session; its printed results (``%a`` hex of doubles) are compared bit for bit with the
Python API on adversarial inputs. Oracle: accsim's Python API (quantize, the 1x1 step of
matmul, Accelerator.matmul).
"""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import accsim
from accsim import cli
from accsim.interop.capi import build, c_string_literal
from accsim.interop.cmodel import reference_round, reference_step, round_cases, step_cases

ROOT = Path(__file__).resolve().parent.parent
TESTBENCH = ROOT / "examples" / "c" / "testbench.c"


@pytest.fixture(scope="session")
def capi(tmp_path_factory):
    out = tmp_path_factory.mktemp("capi")
    lib, header = build(out)
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler (cc) is required for the C API tests"
    exe = out / "testbench"
    subprocess.run([cc, "-Wall", "-Werror", "-I", str(out), str(TESTBENCH), "-L", str(out),
                    "-laccsim", f"-Wl,-rpath,{out}", "-o", str(exe)], check=True,
                   capture_output=True)
    return {"dir": out, "lib": lib, "header": header, "exe": exe}


def run_tb(capi, lines):
    r = subprocess.run([str(capi["exe"])], input="\n".join(lines) + "\n", text=True,
                       capture_output=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == len(lines), r.stderr
    return out


def parse(line):
    what, v, f = line.split(" ")
    return what, float.fromhex(v) if "0x" in v else float(v), int(f)


def same(x, y):
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return np.float64(x).view(np.uint64) == np.float64(y).view(np.uint64)


def test_build_writes_library_and_header(capi):
    assert capi["lib"].name == "libaccsim.so" and capi["lib"].stat().st_size > 0
    h = capi["header"].read_text()
    for fn in ("accsim_load_format", "accsim_load_accelerator", "accsim_last_error",
               "accsim_round", "accsim_step", "accsim_dot", "accsim_release"):
        assert fn in h
    assert "#define ACCSIM_SATURATE 4" in h


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2fnuz", "int8",
                                 "q8_8", "int16_sat"])
def test_round_bit_exact(capi, fmt):
    modes = ["rne", "rna", "rz", "ru", "rd", "ro"]
    x = round_cases(fmt, 120, seed=1)
    lines = [f"round {fmt} {m} {float(v).hex()}" for m in modes for v in x]
    out = run_tb(capi, lines)
    k = 0
    for m in modes:
        ref, rfl, valid = reference_round(x, fmt, m)
        for i in range(x.shape[0]):
            line = out[k]
            k += 1
            if not valid[i]:
                assert line.startswith("error "), (m, x[i], line)
                continue
            what, v, f = parse(line)
            assert what == "round" and same(v, ref[i]) and f == rfl[i], (m, x[i], line, ref[i])


@pytest.mark.parametrize("fmt,mode", [("fp16", "rne"), ("fp16", "rz"), ("bf16", "rne"),
                                      ("fp8_e4m3fn", "ru"), ("e5m7", "rna")])
def test_step_bit_exact(capi, fmt, mode):
    acc, a, b = step_cases(fmt, 200, seed=2)
    sel = np.arange(0, acc.shape[0], max(1, acc.shape[0] // 400))
    acc, a, b = acc[sel], a[sel], b[sel]
    lines = [f"step {fmt} {mode} {float(p).hex()} {float(q).hex()} {float(r).hex()}"
             for p, q, r in zip(acc, a, b)]
    out = run_tb(capi, lines)
    ref, rfl, valid = reference_step(acc, a, b, fmt, mode)
    for i, line in enumerate(out):
        if not valid[i]:
            assert line.startswith("error "), line
            continue
        what, v, f = parse(line)
        assert what == "step" and same(v, ref[i]), (acc[i], a[i], b[i], line, ref[i])
        if np.isfinite([acc[i], a[i], b[i]]).all():
            assert f == rfl[i], (acc[i], a[i], b[i], line, rfl[i])


@pytest.mark.parametrize("name,structure", [
    ("fp8-hopper", "-"), ("fp8-hopper", "wide"), ("fp16-fp16acc", "-"),
    ("fp16-fp16acc", "tree"), ("tensorcore-4term", "-"), ("int8-int16acc-sat", "-"),
    ("int8-int16acc-wrap", "-"),
])
def test_dot_matches_accelerator(capi, name, structure):
    acc = accsim.load_accelerator(name)
    rng = np.random.default_rng(4)
    lines, refs = [], []
    for n in (1, 2, 7, 33, 200):
        scale = 50.0 if acc.input.kind != "float" else 4.0
        a = accsim.quantize(rng.standard_normal(n) * scale, acc.input)
        b = accsim.quantize(rng.standard_normal(n) * scale, acc.weight)
        if acc.input.kind == "float":
            a[: n // 3] *= 16  # larger terms: overflow / saturation paths
        a = accsim.quantize(a, acc.input)
        terms = " ".join(f"{float(x).hex()} {float(y).hex()}" for x, y in zip(a, b))
        lines.append(f"dot {name} {structure} {n} {terms}")
        if structure == "-":
            r = acc.matmul(a[None, :], b[:, None])
        elif structure == "wide":
            r = acc.matmul(a[None, :], b[:, None], which="wide")
        else:
            kw = acc.matmul_kwargs()
            kw["structure"] = structure
            r = accsim.matmul(a[None, :], b[:, None], **kw)
        refs.append((r.values[0, 0], int(r.events.flags[0, 0])))
    out = run_tb(capi, lines)
    for line, (v_ref, f_ref) in zip(out, refs):
        what, v, f = parse(line)
        assert what == "dot" and same(v, v_ref) and f == f_ref, (line, v_ref, f_ref)


def test_dot_on_a_format_handle(capi):
    out = run_tb(capi, ["dot fp16 - 3 0x1p+0 0x1p+0 0x1p-11 0x1p+0 0x1p-11 0x1p+0",
                        "dot fp16 tree 3 0x1p+0 0x1p+0 0x1p-11 0x1p+0 0x1p-11 0x1p+0",
                        "dot fp16 chunked 1 0x1p+0 0x1p+0"])
    # sequential: 1 + 2^-11 ties to 1 twice; tree: (1 + 2^-11) -> 1, then + 2^-11 -> 1
    # vs the pairs (1, 2^-11), then 2^-11 passed up: same here, both exact references
    a = np.array([[1.0, 2.0**-11, 2.0**-11]])
    b = np.ones((3, 1))
    seq = accsim.matmul(a, b, "fp16").values[0, 0]
    tree = accsim.matmul(a, b, "fp16", structure="tree").values[0, 0]
    assert same(parse(out[0])[1], seq) and same(parse(out[1])[1], tree)
    assert out[2].startswith("error chunk_size:")


def test_errors_are_strings(capi):
    out = run_tb(capi, ["badformat no_such_format", "round fp16 sideways 1.0",
                        "round fp16 sr 1.0", "round fp8_e4m3fn rne nan",
                        "dot fp8-hopper - 1 0x1.001p+0 0x1p+0",
                        f"badformat {ROOT / 'formats' / 'numbers' / 'fp16.yaml'}"])
    assert out[0].startswith("error format: unknown format 'no_such_format'")
    assert out[1].startswith("error rounding: expected one of")
    assert out[2].startswith("error rounding: 'sr'")
    assert out[3] == "round nan 0"  # e4m3fn has NaN
    assert out[4].startswith("error a:")
    assert out[5].startswith("handle ")


def test_cli_capi_build(tmp_path, capsys):
    rc = cli.main(["capi", "build", "--out", str(tmp_path / "lib")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "lib" / "libaccsim.so").is_file()
    assert (tmp_path / "lib" / "accsim.h").is_file()
    assert "libaccsim.so" in out


def test_c_string_literal_round_trip(tmp_path):
    """Paths baked into the library (PYTHONPATH set at load time, before the embedded
    interpreter starts) survive quotes, backslashes, '?' (trigraphs) and non-ASCII."""
    text = 'a"b\\c??=d/é/ü:x'
    src = tmp_path / "lit.c"
    src.write_text('#include <stdio.h>\nint main(void){fputs(' + c_string_literal(text) +
                   ', stdout); return 0;}\n')
    exe = tmp_path / "lit"
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, str(src), "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    assert out.decode("utf-8") == text
