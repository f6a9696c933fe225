"""Real exporters' models, end to end: accsim's import + simulation against onnxruntime.

The fixtures in ``tests/fixtures/onnx/`` were written by the torch exporters (TorchScript
and dynamo) and skl2onnx (``make_fixtures.py``; ``README.md`` lists each file's exporter,
opset and op types). For every one, the user's path: ``import_onnx`` (or ``accsim
import-onnx``) -> trace -> ``simulate``, compared with onnxruntime (CPU, default session
options) on the same float32 inputs:

* fp32 operands (``fixtures/onnx/fp32-fp32acc.yaml``), fp32 accumulator: the simulated
  and the float64 reference outputs within :data:`TIGHT` of the output's largest
  magnitude (float32 vs float64 sums only), argmax agreement >= :data:`AGREEMENT`;
* fp16 operands, the fp32 wide register (``fp16-fp16acc``, ``uniform-wide``): argmax
  agreement >= :data:`AGREEMENT` and values within :data:`LOOSE` (fp16 operand rounding:
  onnxruntime itself, run on each fixture with a Cast to float16 and back on both operands
  of every Conv / Gemm / MatMul, moves the outputs by at most 3.9e-3 of their largest
  magnitude (mobilenet; resnet 8.3e-4, transformer 5.5e-4, sklearn 9.1e-4), and accsim's
  resnet run differs from onnxruntime by the same 8.3e-4);
* fp16 operands and the fp16 narrow register: the run completes (overflow is counted, not
  fatal) with one output per sample.

Tests that fail with "import_onnx failed" need issue 16's graph importer.
"""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx  # test extra: a missing package must fail, not skip
import onnxruntime as ort
import pytest

from accsim import simulate
from accsim.cli import main
from accsim.network.onnx_import import import_graph, import_onnx
from accsim.network.trace import load_trace

FIX = Path(__file__).parent / "fixtures" / "onnx"
VIT = Path(__file__).parent.parent / "traces" / "sources"
FIXTURES = json.loads((FIX / "fixtures.json").read_text())
BY_FILE = {f["file"]: f for f in FIXTURES}
FP32_OPERANDS = str(FIX / "fp32-fp32acc.yaml")
AGREEMENT = 0.99      # argmax agreement with onnxruntime
TIGHT = 1e-4          # fp32 operands: max |sim - ort| / max |ort|
LOOSE = 1e-2          # fp16 operands: max |sim - ort| / max |ort|
MAX_FIXTURE_BYTES = 1 << 20
MAX_TOTAL_BYTES = 8 << 20


def describe(fx):
    return f"{fx['file']} ({fx['exporter']}, opset {fx['opset']}, {fx['batch']})"


def graph_outputs(fx):
    return [o.name for o in onnx.load(str(FIX / fx["file"]), load_external_data=False)
            .graph.output]


def import_kwargs(fx):
    """``output=NAME`` only where the model has several outputs (skl2onnx)."""
    return {"output": fx["output"]} if len(graph_outputs(fx)) > 1 else {}


def inputs(fx):
    return np.load(FIX / fx["inputs"])


@lru_cache(maxsize=None)
def onnxruntime_outputs(file):
    """onnxruntime's output ``fx['output']`` as float64 (N, ...); one sample per run where
    the exported batch is fixed at 1; ZipMap's list of {class: probability} -> (N, C)."""
    fx = BY_FILE[file]
    x = inputs(fx)
    sess = ort.InferenceSession(str(FIX / file), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    chunks = [x[i:i + 1] for i in range(len(x))] if sess.get_inputs()[0].shape[0] == 1 \
        else [x]
    out = []
    for c in chunks:
        y = sess.run([fx["output"]], {name: c})[0]
        if isinstance(y, list):  # ZipMap: one dict per sample
            y = [[d[k] for k in sorted(d)] for d in y]
        out.append(np.asarray(y, dtype=np.float64))
    return np.concatenate(out)


def import_or_fail(path, x, labels=None, *, what, **kwargs):
    """``import_onnx(path, x, labels, **kwargs)``, or a one-line test failure naming
    ``what`` (the fixture) and the importer's error."""
    try:
        return import_onnx(path, x, labels, **kwargs)
    except Exception as exc:  # noqa: BLE001 (any failure is reported, one line)
        why = f"{exc.__class__.__name__}: {exc}"
    pytest.fail(f"{what}: import_onnx failed: {why} (needs issue 16's graph importer)",
                pytrace=False)


@lru_cache(maxsize=None)
def imported(file):
    """The trace of ``file`` (imported once per session), or a test failure naming it."""
    fx = BY_FILE[file]
    return import_or_fail(FIX / file, inputs(fx), what=describe(fx), **import_kwargs(fx))


def relative_gap(got, ref):
    return float(np.abs(np.asarray(got, dtype=np.float64) - ref).max() / np.abs(ref).max())


def check_against_ort(fx, got, tol, what):
    ref = onnxruntime_outputs(fx["file"])
    assert got is not None, f"{describe(fx)}: {what}: the result holds no outputs"
    got = np.asarray(got, dtype=np.float64)
    assert len(got) == len(ref) and got.size == ref.size, \
        f"{describe(fx)}: {what}: shape {got.shape}, onnxruntime's {ref.shape}"
    got, ref = got.reshape(len(ref), -1), ref.reshape(len(ref), -1)
    agree = float(np.mean(got.argmax(axis=1) == ref.argmax(axis=1)))
    assert agree >= AGREEMENT, f"{describe(fx)}: {what}: argmax agreement {agree:.3f}"
    gap = relative_gap(got, ref)
    assert gap <= tol, f"{describe(fx)}: {what}: max |sim - ort| / max |ort| = {gap:.2e}"


FILES = [f["file"] for f in FIXTURES if not f["file"].startswith("gru")]
GRU = [f["file"] for f in FIXTURES if f["file"].startswith("gru")]


# ---------------------------------------------------------------------------------------
# the fixtures themselves (independent of accsim)

def test_fixture_files_are_small_and_listed():
    files = sorted(p.name for p in FIX.glob("*.onnx"))
    assert files == sorted(BY_FILE)
    sizes = {p.name: p.stat().st_size for p in FIX.iterdir() if p.suffix != ".py"}
    assert max(sizes.values()) < MAX_FIXTURE_BYTES, sizes
    assert sum(sizes.values()) < MAX_TOTAL_BYTES
    exporters = {(f["exporter"], f["opset"]) for f in FIXTURES}
    assert {("TorchScript", 13), ("TorchScript", 17), ("dynamo", 18), ("dynamo", 20)} \
        <= exporters


@pytest.mark.parametrize("file", sorted(BY_FILE))
def test_fixture_inputs_fit_the_model(file):
    fx = BY_FILE[file]
    x = inputs(fx)
    assert x.dtype == np.float32 and 16 <= len(x) <= 64
    y = onnxruntime_outputs(file)
    assert y.shape[0] == len(x) and np.all(np.isfinite(y))


# ---------------------------------------------------------------------------------------
# accsim against onnxruntime

@pytest.mark.parametrize("file", FILES)
def test_fp32_operands_match_onnxruntime(file):
    fx = BY_FILE[file]
    res = simulate(imported(file), FP32_OPERANDS, analyze=False)
    assert res.n_samples == len(inputs(fx))
    check_against_ort(fx, res.reference_outputs, TIGHT, "float64 reference")
    check_against_ort(fx, res.outputs, TIGHT, "fp32 operands, fp32 register")


@pytest.mark.parametrize("file", FILES)
def test_fp32_wide_register_agrees_with_onnxruntime(file):
    res = simulate(imported(file), "fp16-fp16acc", policy="uniform-wide", analyze=False)
    assert res.recomputed_fraction == 1.0
    check_against_ort(BY_FILE[file], res.outputs, LOOSE, "fp16 operands, fp32 register")


@pytest.mark.parametrize("file", FILES)
def test_fp16_narrow_run_completes(file):
    fx = BY_FILE[file]
    res = simulate(imported(file), "fp16-fp16acc")
    ref = onnxruntime_outputs(file)
    assert res.n_samples == len(ref)
    assert np.asarray(res.outputs).reshape(len(ref), -1).shape == ref.reshape(len(ref), -1).shape
    assert res.layers, f"{describe(fx)}: no matrix product ran on the accumulator"


def test_attention_products_run_on_the_accumulator():
    """Both exporters' transformers: Q K^T and A V are products on the datapath (2 layers:
    at least 2 x (qkv/in_proj, QK^T, AV, out_proj, 2 feed-forward) + embed + head)."""
    for file in ("transformer_ts17.onnx", "transformer_dyn18.onnx"):
        res = simulate(imported(file), "fp16-fp16acc", analyze=False)
        assert len(res.layers) >= 2 * 6 + 2, (file, [lr.name for lr in res.layers])


# ---------------------------------------------------------------------------------------
# the source of the bundled transformer trace (traces/build_transformer.py)

def vit_split():
    return (np.load(VIT / "mnist-vit.inputs.npy").astype(np.float64) / 255.0,
            np.load(VIT / "mnist-vit.labels.npy"))


def test_vit_source_accuracy_as_recorded():
    x, y = vit_split()
    info = json.loads((VIT / "mnist-vit.json").read_text())
    sess = ort.InferenceSession(str(VIT / "mnist-vit.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    assert x.shape == (info["test_images"], 1, 28, 28)
    assert float(np.mean(out.argmax(axis=1) == y)) == info["onnxruntime_accuracy"]


def test_vit_source_simulates_like_onnxruntime():
    """The first 32 held-out images of the ViT through accsim with fp32 operands."""
    x, y = vit_split()
    x, y = x[:32], y[:32]
    path = VIT / "mnist-vit.onnx"
    trace = import_or_fail(path, x, y, what=path.name)
    res = simulate(trace, FP32_OPERANDS, analyze=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    assert res.outputs.shape == ref.shape
    assert np.mean(res.outputs.argmax(axis=1) == ref.argmax(axis=1)) >= AGREEMENT
    assert relative_gap(res.outputs, ref) <= TIGHT


# ---------------------------------------------------------------------------------------
# several outputs, GRU

@pytest.mark.parametrize("file", ["sklearn_mlp.onnx", "sklearn_mlp_zipmap.onnx"])
def test_several_outputs_the_float_one_is_chosen_with_a_note(file):
    """skl2onnx writes (label, probabilities): with no --output the one float output is
    taken, and the note names every other output and how to pick one."""
    fx = BY_FILE[file]
    graph, _, notes = import_graph(FIX / file, inputs(fx))
    chosen = [n for n in notes if "chosen" in n]
    assert len(chosen) == 1, notes
    others = [name for name in graph_outputs(fx) if name != graph.output]
    assert others and all(name in chosen[0] for name in others), chosen
    assert "--output" in chosen[0]


@pytest.mark.parametrize("file", ["sklearn_mlp.onnx", "sklearn_mlp_zipmap.onnx"])
def test_a_named_output_that_does_not_exist_lists_the_outputs(file):
    fx = BY_FILE[file]
    with pytest.raises(ValueError) as e:
        import_onnx(FIX / file, inputs(fx), output="nope")
    msg = str(e.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    missing = [name for name in graph_outputs(fx) if name not in msg]
    assert not missing, f"the error names no output {missing}: {msg!r}"


@pytest.mark.parametrize("file", GRU)
def test_gru_unrolled_or_listed_unsupported(file):
    """Issue 16: GRU is unrolled into matrix products, or the error lists it unsupported."""
    fx = BY_FILE[file]
    try:
        trace = import_onnx(FIX / file, inputs(fx))
    except ValueError as exc:
        msg = str(exc)
        assert "GRU" in msg, f"{describe(fx)}: the import error lists no GRU: {msg!r}"
        assert "\n" not in msg, f"{describe(fx)}: not one line: {msg!r}"
        return
    res = simulate(trace, FP32_OPERANDS, analyze=False)
    check_against_ort(fx, res.outputs, TIGHT, "fp32 operands, fp32 register")


# ---------------------------------------------------------------------------------------
# the command line

@pytest.mark.parametrize("file", ["resnet_ts13.onnx", "mobilenet_dyn20.onnx",
                                  "transformer_dyn18.onnx", "sklearn_mlp_zipmap.onnx"])
def test_cli_import_then_simulate(file, tmp_path, capsys):
    fx = BY_FILE[file]
    out = tmp_path / "trace"
    args = ["import-onnx", str(FIX / file), "--inputs", str(FIX / fx["inputs"]),
            "--out", str(out), "--quiet"]
    args += [f"--output={fx['output']}"] if import_kwargs(fx) else []
    rc = main(args)
    assert rc == 0, f"{describe(fx)}: accsim import-onnx: {capsys.readouterr().err.strip()}"
    capsys.readouterr()
    rc = main(["simulate", str(out), "--accelerator", FP32_OPERANDS, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, f"{describe(fx)}: accsim simulate: {captured.err.strip()}"
    report = json.loads(captured.out)
    assert report["agreement"] >= AGREEMENT
    res = simulate(load_trace(out), FP32_OPERANDS, analyze=False)
    check_against_ort(fx, res.outputs, TIGHT, "trace written by accsim import-onnx")
