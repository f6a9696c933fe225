"""Issue 19 (hardening): options that do not apply are errors, one error style, the
policy named in the text table, --csv, import-onnx --force, validate, matmul labels."""

import csv
import json
import math

import numpy as np
import pytest

from accsim.cli import main
from accsim.network import simulate
from accsim.precision.scheduler import check_policy, valid_tau

TRACE = "digits-mlp-relu"


def _one_error(capsys, match):
    """The command printed one error line in the one style, naming ``match``, and
    nothing on stdout."""
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("accsim: error: "), lines[0]
    assert match in lines[0], lines[0]
    assert out.out == ""


# ---- item 1: options silently ignored or meaningless ----------------------------------
@pytest.mark.parametrize("extra, match", [
    (["--tau", "0.5"], "--tau: the 'uniform-narrow' policy takes no --tau"),
    (["--policy", "uniform-narrow", "--tau", "1"], "--tau"),
    (["--policy", "uniform-wide", "--fraction", "0.1"], "--fraction"),
    (["--policy", "overflow", "--tau", "1"], "--tau"),
    (["--policy", "condition", "--tau", "0.5", "--fraction", "0.2"], "not both"),
    (["--policy", "static", "--tau", "0.5", "--fraction", "0.2"], "not both"),
    (["--policy", "condition", "--tau", "-1"], "--tau: expected a number >= 0"),
    (["--policy", "condition", "--tau", "nan"], "--tau"),
    (["--technology", "foo"], "--technology: unknown technology 'foo'"),
    (["--technology", "foo", "--json"], "--technology: unknown technology 'foo'"),
    (["--estimator", "norm"], "--estimator: the 'uniform-narrow' policy"),
    (["--policy", "static", "--tau", "0.1", "--estimator", "norm"], "--estimator"),
    (["--policy", "random", "--fraction", "0.1", "--estimator", "norm"], "--estimator"),
    (["--policy", "condition", "--tau", "1", "--quantile", "0.5"], "--quantile"),
    (["--policy", "condition", "--tau", "1", "--calibration", "5"], "--calibration"),
    (["--policy", "condition", "--tau", "1", "--ladder", "fp16,fp32"], "--ladder"),
])
def test_simulate_refuses_options_that_do_not_apply(capsys, tmp_path, extra, match):
    csv_path = tmp_path / "layers.csv"
    rc = main(["simulate", TRACE, "--limit", "5", "--narrow-only", "--csv", str(csv_path),
               *extra])
    assert rc == 2
    _one_error(capsys, match)
    assert not csv_path.exists()


def test_valid_tau_is_the_one_definition():
    for t in (0, 0.0, 1e-9, 3, math.inf, np.float64(0.5)):
        assert valid_tau(t), t
    for t in (-1, -1e-300, -math.inf, math.nan, True, "1", None):
        assert not valid_tau(t), t


@pytest.mark.parametrize("kw, match", [
    ({"policy": "condition", "tau": -1.0}, "^tau: expected a number >= 0"),
    ({"policy": "condition", "tau": 0.5, "fraction": 0.2}, "^fraction: .*not both"),
    ({"policy": "uniform-wide", "tau": 0.5}, "^tau: the 'uniform-wide' policy"),
    ({"policy": "overflow", "fraction": 0.5}, "^fraction: the 'overflow' policy"),
    ({"policy": "condition", "tau": 1.0, "quantile": 0.5}, "^quantile: only"),
])
def test_simulate_api_refuses_the_same(kw, match):
    with pytest.raises(ValueError, match=match):
        simulate(TRACE, limit=5, **kw)


def test_check_policy_accepts_the_limits():
    check_policy("condition", 0.0, None, "exact")
    check_policy("condition", math.inf, None, "exact")
    check_policy("static", None, 0.0, "exact")


@pytest.mark.parametrize("taus", ["[-1]", "[0.1, -0.5]", "[.inf]"])
def test_sweep_spec_refuses_bad_taus(tmp_path, capsys, taus):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""\
kind: sweep
version: 1
grid:
  traces: [{TRACE}]
  accelerators: [fp16-fp32acc]
  policies: [condition]
  taus: {taus}
""")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    _one_error(capsys, "grid.taus[")
    assert not out.exists()


# ---- item 3: the text table names the policy, per-layer re-issued fractions -----------
def test_text_table_names_the_policy_and_per_layer_fractions(capsys):
    assert main(["simulate", TRACE, "--limit", "20", "--narrow-only", "--narrow", "bf16",
                 "--policy", "condition", "--tau", "0.02"]) == 0
    text = capsys.readouterr().out
    assert "narrow acc" not in text
    assert "policy condition (tau 0.02, estimator exact): re-issued" in text
    rows = [ln for ln in text.splitlines() if ln.startswith(("linear0 ", "linear2 "))]
    assert len(rows) == 2
    assert all("condition bf16+fp32" in r and r.rstrip().endswith("%") for r in rows)
    assert "energy on horowitz-45nm:" in text
    bottom = [ln for ln in text.splitlines() if ln.startswith("condition bf16+fp32")]
    assert len(bottom) == 1

    assert main(["simulate", TRACE, "--limit", "5", "--policy", "uniform-wide"]) == 0
    text = capsys.readouterr().out
    assert "narrow acc" not in text and "uniform-wide fp32" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("linear0 ")]
    assert rows[0].rstrip().endswith("100.00%") and rows[1].rstrip().endswith("-")


def test_text_table_prices_on_the_named_technology(capsys):
    assert main(["simulate", TRACE, "--limit", "5", "--narrow-only", "--technology",
                 "jouppi-7nm"]) == 0
    assert "energy on jouppi-7nm:" in capsys.readouterr().out


# ---- item 4: --csv ----------------------------------------------------------------------
def test_simulate_csv_per_layer(tmp_path, capsys):
    path = tmp_path / "layers.csv"
    assert main(["simulate", TRACE, "--limit", "20", "--narrow", "bf16", "--policy",
                 "condition", "--tau", "0.02", "--json", "--csv", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [(r["run"], r["layer"]) for r in rows] == [
        ("condition bf16+fp32", "linear0"), ("condition bf16+fp32", "linear2"),
        ("wide fp32", "linear0"), ("wide fp32", "linear2")]
    for r, lay in zip(rows, d["layers"]):
        assert float(r["recomputed_fraction"]) == lay["recomputed_fraction"]
        assert float(r["rel_error_max"]) == lay["rel_error_max"]
        assert int(r["inexact"]) == lay["events"]["inexact"]
        assert r["policy"] == "condition" and float(r["tau"]) == 0.02
        assert r["fraction"] == "" and r["estimator"] == "exact"
    assert rows[2]["policy"] == "uniform-narrow" and rows[2]["estimator"] == ""
    assert rows[2]["accumulator"] == "fp32"


def test_csv_path_checked_before_work(tmp_path, capsys):
    assert main(["simulate", TRACE, "--csv", str(tmp_path / "no" / "x.csv")]) == 2
    _one_error(capsys, "--csv")
    assert main(["simulate", TRACE, "--csv", str(tmp_path)]) == 2
    _one_error(capsys, "is a folder")


# ---- item 6: consistency ----------------------------------------------------------------
@pytest.mark.parametrize("argv, match", [
    (["simulate", TRACE, "--seed", "x"], "simulate: argument --seed"),
    (["matmul", "--m", "0"], "--m must be a positive integer"),
    (["cost", "mac", "-a", "fp16-fp32acc", "--k", "0"], "--k must be a positive"),
    (["formats", "show"], "show: expected a format name"),
    (["quantize", "-f", "fp16", "abc"], "VALUE 'abc' is not a number"),
    (["import-onnx", "m.onnx", "--inputs", "missing.npy", "--out", "t"], "missing.npy"),
    (["nope"], "invalid choice"),
])
def test_one_error_style_for_every_command(capsys, argv, match):
    assert main(argv) == 2
    _one_error(capsys, match)


def _tiny_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    np.save(tmp_path / "x.npy", np.ones((2, 4)))
    np.save(tmp_path / "x3.npy", np.ones((3, 4)))
    return path


def test_import_onnx_refuses_to_overwrite_without_force(tmp_path, capsys):
    model = _tiny_onnx(tmp_path)
    out = tmp_path / "trace"
    argv = ["import-onnx", str(model), "--inputs", str(tmp_path / "x.npy"), "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv3 = [*argv[:3], str(tmp_path / "x3.npy"), *argv[4:]]
    assert main(argv3) == 2
    _one_error(capsys, "--force")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*argv3, "--force"]) == 0
    assert "3 inputs" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main([*argv[:-1], str(other), "--force"]) == 2
    _one_error(capsys, "not a trace folder")
    assert (other / "notes.txt").read_text() == "keep"


ACC = """\
kind: accelerator
version: 1
operands: {input: fp16, weight: fp16}
narrow: {format: fp16}
wide: {format: fp32}
structure: {kind: chunked, chunk_size: 32}
array: {rows: 4, cols: 4, dataflow: os, clock_ghz: 1}
"""


@pytest.mark.parametrize("text, match", [
    (ACC.replace("chunk_size", "chunk_sise"), "unknown key (did you mean 'chunk_size'?)"),
    (ACC.replace("clock_ghz", "clok_ghz"), "did you mean 'clock_ghz'?"),
    (ACC.replace("rows: 4, ", "rows: 4, colz: 1, "), "did you mean 'cols'?"),
    (ACC.replace("operands", "operand"), "did you mean 'operands'?"),
    (ACC.replace("kind: accelerator", "kind: acelerator"), "did you mean 'accelerator'?"),
])
def test_validate_accelerator_typos(tmp_path, capsys, text, match):
    p = tmp_path / "acc.yaml"
    p.write_text(text)
    assert main(["validate", str(p)]) == 2
    _one_error(capsys, match)


def test_validate_technology_typos(tmp_path, capsys):
    from accsim.hardware.technology import builtin_files
    src = builtin_files("technology")["horowitz-45nm"].read_text()
    p = tmp_path / "tech.yaml"
    p.write_text(src.replace("energy_pj", "energy_jp", 1))
    assert main(["validate", str(p)]) == 2
    _one_error(capsys, "did you mean 'energy_pj'?")
    p.write_text(src.replace("primitives:", "primitive:", 1))
    assert main(["validate", str(p)]) == 2
    _one_error(capsys, "did you mean 'primitives'?")


def test_validate_every_kind(tmp_path, capsys):
    from accsim.hardware.technology import builtin_files
    acc = tmp_path / "acc.yaml"
    acc.write_text(ACC)
    fmt = tmp_path / "f.yaml"
    fmt.write_text("kind: number_format\nversion: 1\nexp_bits: 5\nman_bits: 4\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"kind: sweep\nversion: 1\ngrid:\n  traces: [{TRACE}]\n"
                    f"  accelerators: [{acc}]\n  policies: [uniform-narrow]\n")
    from accsim.network.trace import traces_dir
    files = [acc, fmt, spec, builtin_files("technology")["jouppi-7nm"], traces_dir() / TRACE]
    assert main(["validate", *map(str, files)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split(": ok: ")[1].split()[0] for ln in out] == [
        "accelerator", "number", "sweep", "technology", "trace"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: number_format\nversion: 1\nexp_bits: 5\n")
    assert main(["validate", str(acc), str(bad)]) == 2
    out = capsys.readouterr()
    assert out.out.count(": ok: ") == 1 and "man_bits" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_matmul_prints_format_names_and_documents_options(tmp_path, capsys):
    acc = tmp_path / "acc.yaml"
    acc.write_text(ACC.replace("{format: fp16}", "{format: {exp_bits: 5, man_bits: 6}}"))
    assert main(["matmul", "-a", str(acc), "--m", "2", "--k", "8", "--n", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["format"] for r in d["results"]] == ["e5m6", "fp32"]
    with pytest.raises(SystemExit):
        main(["matmul", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("rows of A and of the result (default 64)",
                  "terms per output: columns of A, rows of B (default 512)",
                  "columns of B and of the result (default 64)",
                  "seed of the random operands", "built-in accelerator name or YAML path",
                  "relative errors against float64"):
        assert words in text, words


def test_import_onnx_notice_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    import sys
    model = _tiny_onnx(tmp_path)
    argv = ["import-onnx", str(model), "--inputs", str(tmp_path / "x.npy")]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "accsim import-onnx: converting" in err and "(2 inputs)" in err
    assert main([*argv, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().err == ""
