"""C models compiled through cffi and cross-checked against accsim.

Oracle: accsim's own model (quantize; matmul on 1x1 products with the register as bias),
itself tested against exact references elsewhere. The system C compiler is required.
"""

import math
from pathlib import Path

import numpy as np
import pytest

import accsim
from accsim import cli
from accsim.interop.cmodel import (
    CModel,
    cmodel_matmul,
    compile_c_model,
    crosscheck,
    reference_step,
    round_cases,
    step_cases,
)

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples" / "c"
GOOD = EX / "fp16_rne_step.c"
WRONG = EX / "fp16_ties_away_step.c"

FLOAT32_DOUBLE_ROUNDING = """
double f32_step(double acc, double a, double b, int *flags)
{
    double s = acc + a * b;      /* rounded to double first: double rounding */
    float r = (float)s;
    if ((double)r != s) *flags |= 1;
    return r;
}
"""


@pytest.fixture(scope="module")
def good():
    return compile_c_model(GOOD, "fp16_rne_step")


@pytest.fixture(scope="module")
def wrong():
    return compile_c_model(WRONG, "fp16_ties_away_step")


def bits(x):
    return np.asarray(x, dtype=np.float64).view(np.uint64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_fp16_model_passes(good, seed):
    res = crosscheck(good, "fp16", "rne", cases=6000, seed=seed)
    assert res.mismatches == 0 and res.first is None
    assert res.cases >= 6000 and res.skipped == 0


def test_wrong_model_is_caught(wrong):
    res = crosscheck(wrong, "fp16", "rne", cases=2000)
    assert res.mismatches > 0
    f = res.first
    # the first mismatch is a tie: the exact value is halfway between fp16 neighbours
    lo, hi = sorted([f["expected"], f["got"]])
    exact = f["acc"] + f["a"] * f["b"]
    assert exact == (lo + hi) / 2
    assert accsim.quantize(exact, "fp16", "rna") == f["got"]


def test_float32_double_rounding_is_caught():
    m = compile_c_model(FLOAT32_DOUBLE_ROUNDING, "f32_step")
    res = crosscheck(m, "fp32", "rne", cases=3000, check_flags=False)
    assert res.mismatches > 0
    f = res.first
    # accsim's value is the correctly rounded exact sum
    got_exact = accsim.matmul([[f["a"]]], [[f["b"]]], "fp32", bias=f["acc"]).values[0, 0]
    assert bits(got_exact) == bits(f["expected"]) != bits(f["got"])


def test_round_model(good):
    m = compile_c_model(GOOD, "fp16_rne_round", kind="round")
    assert crosscheck(m, "fp16", "rne", cases=5000).mismatches == 0
    # rz is a different rounding: mismatches must be reported
    assert crosscheck(m, "fp16", "rz", cases=2000).mismatches > 0
    v, f = m.round(1 + 2.0**-11)
    assert v == 1.0 and f == 1
    v, f = m.round(65520.0)
    assert v == math.inf and f == 3


def test_scalar_and_vector_calls_agree(good):
    acc, a, b = step_cases("fp16", 500, seed=3)
    vals, flags = good.step_many(acc, a, b)
    for i in range(0, acc.shape[0], 37):
        v, f = good.step(acc[i], a[i], b[i])
        assert bits(v) == bits(vals[i]) or (math.isnan(v) and math.isnan(vals[i]))
        assert f == flags[i]
    with pytest.raises(ValueError, match="no round"):
        good.round(1.0)


def test_reference_step_rounds_once():
    # 1 + 2^-11 + 2^-30: a tie in fp16 only after a first rounding to fp32-ish width
    v, f, ok = reference_step([1.0], [2.0**-11 + 2.0**-30], [1.0], "fp16")
    assert ok[0] and v[0] == 1.0 + 2.0**-10 and f[0] == 1
    v, f, ok = reference_step([-0.0], [-0.0], [1.0], "fp16")
    assert math.copysign(1, v[0]) < 0
    v, f, ok = reference_step([math.inf], [-1.0], [math.inf], "fp16")
    assert math.isnan(v[0])


def test_cases_cover_the_boundaries():
    fmt = accsim.load_format("fp16")
    acc, a, b = step_cases(fmt, 100)
    assert np.isnan(acc).any() and np.isinf(a).any() and np.isinf(b).any()
    assert (acc == fmt.max_finite).any() and (acc == fmt.min_normal).any()
    assert ((acc == 0) & np.signbit(acc)).any()
    x = round_cases(fmt, 100)
    assert (x == 65520.0).any() and (x == 2.0**-25).any()
    assert (x == math.nextafter(65520.0, 0)).any()
    xi = round_cases("int8", 100)
    assert (xi == 127.5).any()


def test_cmodel_matmul_matches_accsim(good):
    rng = np.random.default_rng(0)
    a = accsim.quantize(rng.standard_normal((7, 60)) * 8, "fp16")
    b = accsim.quantize(rng.standard_normal((60, 5)) * 8, "fp16")
    init = accsim.quantize(rng.standard_normal((7, 5)), "fp16")
    mine = cmodel_matmul(a, b, good, init=init)
    ref = accsim.matmul(a, b, "fp16", bias=init)
    assert np.array_equal(bits(mine.values), bits(ref.values))
    assert np.array_equal(mine.events.flags, ref.events.flags)
    assert np.array_equal(mine.events.inexact, ref.events.inexact)
    # overflow to infinity is counted too
    big = cmodel_matmul(np.full((1, 3), 256.0), np.full((3, 1), 128.0), good)
    assert big.values[0, 0] == math.inf and big.events.overflows[0] == 1
    with pytest.raises(ValueError, match="rows to match"):
        cmodel_matmul(a, a, good)


@pytest.mark.parametrize("src,fn,kind,pattern", [
    ("double f(double acc, double a, double b, int *flags) { return acc + a*b }", "f", "step",
     r"^<c-model>: compile error: line 1: expected ';'"),
    ("double f(double acc, double a, double b, int *flags) { return 0; }", "g", "step",
     r"^<c-model>: no function 'g' \(expected double g\(double acc"),
    ("float f(float acc, float a, float b, int *flags) { return 0; }", "f", "step",
     r"^<c-model>: function 'f' has the wrong signature"),
    ("double f(double acc, double a, double b) { return 0; }", "f", "step",
     r"wrong signature"),
    ("double f(double acc, double a, double b, int *flags) { return 0; }", "f", "round",
     r"wrong signature \(expected double f\(double x, int \*flags\)\)"),
    ("double f(double acc, double a, double b, int *flags);", "f", "step",
     r"'f' is declared but never defined"),
    ("#include <no_such_header_accsim.h>\n", "f", "step", r"compile error: .*no_such_header"),
    ("double f(double x, int *flags) { return x; }", "f", "sideways", r"^kind: expected"),
    ("double f(double x, int *flags) { return x; }", "f g", "round", r"^function: expected"),
])
def test_bad_models_are_one_line(src, fn, kind, pattern):
    with pytest.raises(ValueError, match=pattern) as ei:
        compile_c_model(src, fn, kind)
    assert "\n" not in str(ei.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        compile_c_model(tmp_path / "none.c", "f")


def test_compile_is_cached(good):
    again = compile_c_model(GOOD, "fp16_rne_step")
    assert isinstance(again, CModel) and again.lib is good.lib


# ---- CLI ------------------------------------------------------------------------------

@pytest.fixture
def run_cli(capsys):
    def run(*argv):
        rc = cli.main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err
    return run


def test_cli_crosscheck_pass(run_cli):
    rc, out, err = run_cli("crosscheck", "--c-model", str(GOOD), "--function", "fp16_rne_step",
                           "--format", "fp16", "--cases", "3000")
    assert rc == 0 and " 0 mismatches" in out and err == ""


def test_cli_crosscheck_finds_mismatch(run_cli):
    rc, out, _ = run_cli("crosscheck", "--c-model", str(WRONG), "--function",
                           "fp16_ties_away_step", "--format", "fp16")
    assert rc == 1
    lines = out.splitlines()
    assert "mismatches" in lines[0] and " 0 mismatches" not in lines[0]
    assert lines[1].startswith("first mismatch: acc=")
    assert "accsim:" in lines[2] and "c-model:" in lines[3]


def test_cli_crosscheck_round_kind(run_cli):
    rc, out, _ = run_cli("crosscheck", "--c-model", str(GOOD), "--function", "fp16_rne_round",
                         "--format", "fp16", "--kind", "round")
    assert rc == 0, out


@pytest.mark.parametrize("argv,pattern", [
    (["--function", "nope", "--format", "fp16"], "no function 'nope'"),
    (["--function", "fp16_rne_step", "--format", "fp99"], "unknown format 'fp99'"),
    (["--function", "fp16_rne_step", "--format", "fp16", "--kind", "round"], "wrong signature"),
    (["--function", "fp16_rne_step", "--format", "fp16", "--cases", "0"], "--cases"),
])
def test_cli_crosscheck_bad_input(run_cli, argv, pattern):
    rc, _, err = run_cli("crosscheck", "--c-model", str(GOOD), *argv)
    assert rc == 2 and pattern in err and err.count("\n") == 1


def test_cli_crosscheck_bad_source(run_cli, tmp_path):
    p = tmp_path / "broken.c"
    p.write_text("double f(double acc, double a, double b, int *flags) {\n  return acc +;\n}\n")
    rc, _, err = run_cli("crosscheck", "--c-model", str(p), "--function", "f",
                           "--format", "fp16")
    assert rc == 2 and err.count("\n") == 1 and "line 2" in err
    rc, _, err = run_cli("crosscheck", "--c-model", str(tmp_path / "nofile.c"),
                           "--function", "f", "--format", "fp16")
    assert rc == 2 and "file not found" in err


def test_c_model_as_matmul_accumulator():
    """accsim.matmul accepts a compiled C step model as the accumulator register."""
    model = compile_c_model(GOOD, "fp16_rne_step", kind="step")
    rng = np.random.default_rng(3)
    a = accsim.quantize(rng.standard_normal((4, 20)), "fp16")
    b = accsim.quantize(rng.standard_normal((20, 3)), "fp16")
    got = accsim.matmul(a, b, model)
    ref = accsim.matmul(a, b, "fp16")
    assert np.array_equal(got.values, ref.values)
    with pytest.raises(ValueError, match="C model"):
        accsim.matmul(a, b, model, structure="tree")
