"""Trace format: builder, save/load round trip, validation errors, float64 operators and the
bundled traces."""

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from accsim.network import ops
from accsim.network.products import forward64
from accsim.network.trace import Layer, Trace, load_trace, save_trace, sequential

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "traces"
BUNDLED = ["digits-mlp-relu", "mnist-mlp-relu", "mnist-mlp-tanh", "mnist-cnn"]
RNG = np.random.default_rng(7)


def small_cnn(n=6):
    x = RNG.random((n, 2, 9, 9))
    y = RNG.integers(0, 4, n)
    return sequential("small-cnn", x, y, [
        ("conv2d", RNG.standard_normal((5, 2, 3, 3)), RNG.standard_normal(5),
         {"stride": (2, 1), "padding": (1, 0, 1, 2)}),
        ("relu",),
        ("maxpool", {"kernel": 2, "stride": 1, "padding": (0, 0, 1, 1)}),
        ("avgpool", {"kernel": 3, "stride": 2, "padding": 1}),
        ("flatten",),
        ("linear", RNG.standard_normal((4, 5 * 3 * 5)), None),
        ("softmax",),
    ], quant={"input": {"format": "fp16", "scale": "none"},
              "weight": {"format": "int8", "scale": "per-channel"}}, description="test")


def small_mlp(kind="relu", n=10):
    x = RNG.standard_normal((n, 12))
    return sequential("small-mlp", x, RNG.integers(0, 3, n), [
        ("linear", RNG.standard_normal((8, 12)), RNG.standard_normal(8)), (kind,),
        ("linear", RNG.standard_normal((3, 8)), RNG.standard_normal(3))])


# ---------------------------------------------------------------------------------------
# operators against slow, obvious loops

def naive_conv(x, w, b, stride, pad):
    t, l, bo, r = pad
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    n, _, h, wd = xp.shape
    co, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    out = np.zeros((n, co, ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", win, w) + b
    return out


def naive_pool(x, k, s, pad, how, include_pad=False):
    t, l, bo, r = pad
    n, c, h, w = x.shape
    ho, wo = (h + t + bo - k[0]) // s[0] + 1, (w + l + r - k[1]) // s[1] + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - t, j * s[1] - l
            rs = slice(max(r0, 0), min(r0 + k[0], h))
            cs = slice(max(c0, 0), min(c0 + k[1], w))
            win = x[:, :, rs, cs]
            if how == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                cnt = k[0] * k[1] if include_pad else win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return out


@pytest.mark.parametrize("stride,pad", [((1, 1), (0, 0, 0, 0)), ((2, 1), (1, 0, 1, 2)),
                                        ((2, 3), (2, 2, 2, 2))])
def test_conv2d_im2col_matches_loops(stride, pad):
    x = RNG.standard_normal((3, 2, 8, 7))
    w = RNG.standard_normal((4, 2, 3, 2))
    b = RNG.standard_normal(4)
    np.testing.assert_allclose(ops.conv2d(x, w, b, stride, pad), naive_conv(x, w, b, stride, pad),
                               rtol=1e-12, atol=1e-12)
    patches, ho, wo = ops.im2col(x, 3, 2, stride, pad)
    assert patches.shape == (3 * ho * wo, 2 * 3 * 2)


@pytest.mark.parametrize("k,s,pad,inc", [((2, 2), (2, 2), (0, 0, 0, 0), False),
                                         ((3, 3), (1, 2), (1, 1, 1, 1), False),
                                         ((3, 2), (2, 1), (1, 0, 2, 1), True)])
def test_pools_match_loops(k, s, pad, inc):
    x = RNG.standard_normal((2, 3, 7, 8))
    np.testing.assert_allclose(ops.maxpool(x, k, s, pad), naive_pool(x, k, s, pad, "max"))
    np.testing.assert_allclose(ops.avgpool(x, k, s, pad, inc),
                               naive_pool(x, k, s, pad, "avg", inc), rtol=1e-13)
    np.testing.assert_allclose(ops.globalavgpool(x)[:, :, 0, 0], x.mean(axis=(2, 3)))


def test_activations():
    z = np.linspace(-6, 6, 101).reshape(1, -1)
    assert np.array_equal(ops.activation("relu", z), np.maximum(z, 0))
    gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in z[0]])
    np.testing.assert_allclose(ops.activation("gelu", z)[0], gelu, rtol=1e-15)
    np.testing.assert_allclose(ops.activation("sigmoid", z), 1 / (1 + np.exp(-z)))
    sm = ops.activation("softmax", np.stack([z[0], 2 * z[0]]))
    np.testing.assert_allclose(sm.sum(axis=-1), 1.0)
    assert np.array_equal(ops.activation("identity", z), z)
    assert np.all(np.isfinite(ops.activation("sigmoid", np.array([-1e4, 1e4]))))
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation("swish", z)


# ---------------------------------------------------------------------------------------
# builder and round trip

def test_builder_and_forward():
    t = small_cnn()
    assert t.matmul_layers() == ["conv2d0", "linear5"]
    # model shapes: a model batch axis of one in front of version 1's per-sample shapes
    assert t.shapes()["conv2d0"] == (1, 5, 5, 9) and t.shapes()["linear5"] == (1, 4)
    assert forward64(t).shape == (6, 1, 4)
    every = forward64(t, return_all=True)
    assert set(every) >= {"input", "conv2d0", "softmax6"}
    w = t.arrays["conv2d0.weight"]
    ref = naive_conv(t.inputs, w, t.arrays["conv2d0.bias"], (2, 1), (1, 0, 1, 2))
    np.testing.assert_allclose(every["conv2d0"][:, 0], ref, rtol=1e-12, atol=1e-12)
    assert t.reference_accuracy == t.accuracy()


def test_round_trip(tmp_path):
    t = small_cnn()
    save_trace(t, tmp_path / "tr")
    u = load_trace(tmp_path / "tr")
    assert u.name == t.name and u.description == "test" and u.quant == t.quant
    assert u.graph == t.graph
    assert set(u.arrays) == set(t.arrays)
    for k in t.arrays:
        assert np.array_equal(u.arrays[k], t.arrays[k]) and u.arrays[k].dtype == np.float64
    assert np.array_equal(u.inputs, t.inputs) and np.array_equal(u.labels, t.labels)
    assert u.labels.dtype == np.int64 and u.reference_accuracy == t.reference_accuracy
    assert np.array_equal(forward64(u), forward64(t))
    # overwrite in place; no temporary folders left behind
    save_trace(u, tmp_path / "tr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tr"]
    assert load_trace(tmp_path / "tr" / "trace.yaml").graph == t.graph


def test_round_trip_fp16_values_stored_small(tmp_path):
    x = RNG.random((50, 64)).astype(np.float16).astype(np.float64)
    W = RNG.standard_normal((10, 64)).astype(np.float16).astype(np.float64)
    t = sequential("h", x, None, [("linear", W)])
    save_trace(t, tmp_path / "h")
    with np.load(tmp_path / "h" / "arrays.npz") as z:
        assert z["__inputs__"].dtype == np.float16
    u = load_trace(tmp_path / "h")
    assert np.array_equal(u.inputs, x) and u.labels is None and u.reference_accuracy is None


def test_residual_and_explicit_inputs(tmp_path):
    x = RNG.standard_normal((4, 6))
    W = RNG.standard_normal((6, 6))
    t = Trace("res", (Layer("fc", "linear", (), {"weight": "W", "bias": None}),
                      Layer("act", "relu"),
                      Layer("sum", "add", ("act", "input")),
                      Layer("out", "tanh", ("sum",))), {"W": W}, x)
    t.validate()
    expect = np.tanh(np.maximum(x @ W.T, 0) + x)
    np.testing.assert_allclose(forward64(t)[:, 0], expect)
    save_trace(t, tmp_path / "res")
    assert load_trace(tmp_path / "res").graph.nodes[2].inputs == ("act", "input")


# ---------------------------------------------------------------------------------------
# bad input: one line naming file, layer and problem

def one_line(exc):
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_validation_errors_in_memory():
    x = RNG.standard_normal((4, 12))
    W = RNG.standard_normal((8, 12))
    with pytest.raises(ValueError) as ei:
        sequential("s", x, None, [("linear", W), ("linear", RNG.standard_normal((3, 7)))])
    assert "layer 'linear1' (linear)" in one_line(ei) and "8 features" in one_line(ei)
    bad = x.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="inputs: non-finite"):
        sequential("s", bad, None, [("linear", W)])
    Winf = W.copy()
    Winf[0, 0] = np.inf
    with pytest.raises(ValueError, match="array 'linear0.weight': contains NaN or inf"):
        sequential("s", x, None, [("linear", Winf)])
    with pytest.raises(ValueError, match="unknown layer kind"):
        sequential("s", x, None, [("linear", W), ("swish",)])
    with pytest.raises(ValueError, match="array 'nope' missing"):
        Trace("s", (Layer("fc", "linear", (), {"weight": "nope"}),), {}, x).validate()
    with pytest.raises(ValueError, match="input 'later' is not"):
        Trace("s", (Layer("a", "relu", ("later",)),), {}, x).validate()
    with pytest.raises(ValueError, match="add a flatten layer"):
        sequential("s", RNG.random((2, 1, 4, 4)), None, [("linear", W)])
    with pytest.raises(ValueError, match="groups other than 1"):
        sequential("s", RNG.random((2, 4, 5, 5)), None,
                   [("conv2d", RNG.standard_normal((4, 2, 3, 3)))])
    with pytest.raises(ValueError, match=r"quant.weight.scale"):
        sequential("s", x, None, [("linear", W)],
                   quant={"input": {"format": "fp16", "scale": "none"},
                          "weight": {"format": "fp16", "scale": "per-row"}})
    with pytest.raises(ValueError, match=r"quant.input.scale"):
        sequential("s", x, None, [("linear", W)],
                   quant={"input": {"format": "int8", "scale": "per-channel"}})
    with pytest.raises(ValueError, match=r"quant.weight.format"):
        sequential("s", x, None, [("linear", W)],
                   quant={"weight": {"format": "fp99", "scale": "none"}})


def test_save_refuses_bad_trace_and_non_trace_folder(tmp_path):
    t = small_mlp()
    t = Trace(t.name, t.graph, {**t.arrays, "linear2.weight": np.ones((3, 5))}, t.inputs)
    with pytest.raises(ValueError):
        save_trace(t, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a trace folder"):
        save_trace(small_mlp(), other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.fixture
def saved(tmp_path):
    """A version-1 trace folder (linear0 (8, 12), relu1, linear2 (3, 8)) as older
    accsim wrote them."""
    t = small_mlp()
    d = tmp_path / "t"
    save_trace(t, d)
    doc = {"kind": "trace", "version": 1, "name": t.name, "num_samples": len(t.inputs),
           "input_shape": [12], "arrays": "arrays.npz", "layers": [
               {"name": "linear0", "kind": "linear", "weight": "linear0.weight",
                "bias": "linear0.bias"},
               {"name": "relu1", "kind": "relu"},
               {"name": "linear2", "kind": "linear", "weight": "linear2.weight",
                "bias": "linear2.bias"}]}
    (d / "trace.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return d


def test_version1_folder_loads_as_graph(saved):
    t = load_trace(saved)
    assert [(n.name, n.op) for n in t.graph.nodes] == [
        ("linear0", "Gemm"), ("relu1", "Relu"), ("linear2", "Gemm")]
    assert t.graph.nodes[0].attrs == {"transB": 1} and t.graph.input_shape == (1, 12)
    W, b = t.arrays["linear0.weight"], t.arrays["linear0.bias"]
    h = np.maximum(t.inputs @ W.T + b, 0)
    np.testing.assert_allclose(forward64(t)[:, 0],
                               h @ t.arrays["linear2.weight"].T + t.arrays["linear2.bias"],
                               rtol=1e-13)


def edit_yaml(path, fn):
    y = path / "trace.yaml"
    d = yaml.safe_load(y.read_text())
    fn(d)
    y.write_text(yaml.safe_dump(d, sort_keys=False))


def test_load_folder_without_yaml(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as ei:
        load_trace(tmp_path / "empty")
    assert "empty" in one_line(ei) and "trace.yaml missing" in one_line(ei)
    with pytest.raises(ValueError, match="no such trace folder"):
        load_trace(tmp_path / "nowhere")


def test_load_unknown_kind(saved):
    edit_yaml(saved, lambda d: d["layers"][1].update(kind="swish"))
    with pytest.raises(ValueError) as ei:
        load_trace(saved)
    msg = one_line(ei)
    assert "trace.yaml" in msg and "relu1" in msg and "unknown layer kind 'swish'" in msg


def test_load_unknown_key_and_bad_header(saved):
    edit_yaml(saved, lambda d: d["layers"][0].update(strides=[1, 1]))
    with pytest.raises(ValueError, match=r"layer 'linear0' \(linear\): unknown key 'strides'"):
        load_trace(saved)
    edit_yaml(saved, lambda d: (d["layers"][0].pop("strides"), d.update(kind="accelerator")))
    with pytest.raises(ValueError, match=r"trace.yaml: key 'kind': expected 'trace'"):
        load_trace(saved)


def test_load_missing_array(saved):
    edit_yaml(saved, lambda d: d["layers"][2].update(weight="fc9.weight"))
    with pytest.raises(ValueError) as ei:
        load_trace(saved)
    msg = one_line(ei)
    assert "trace.yaml" in msg and "layer 'linear2' (linear)" in msg
    assert "array 'fc9.weight' missing" in msg


def test_load_shapes_do_not_chain(saved):
    def f(d):
        d["layers"][2]["weight"] = "linear0.weight"
    edit_yaml(saved, f)
    with pytest.raises(ValueError, match=r"layer 'linear2' \(linear\): input has 8 features"):
        load_trace(saved)


def rewrite_npz(path, fn):
    with np.load(path / "arrays.npz") as z:
        d = {k: z[k] for k in z.files}
    fn(d)
    np.savez(path / "arrays.npz", **d)


def test_load_nan_in_weights_and_inputs(saved):
    rewrite_npz(saved, lambda d: d["linear2.weight"].__setitem__((0, 0), np.nan))
    with pytest.raises(ValueError) as ei:
        load_trace(saved)
    msg = one_line(ei)
    assert "arrays.npz" in msg and "linear2.weight" in msg and "NaN or inf" in msg

    def f(d):
        d["linear2.weight"][0, 0] = 0.0
        d["__inputs__"] = d["__inputs__"].astype(np.float64)
        d["__inputs__"][1, 1] = np.inf
    rewrite_npz(saved, f)
    with pytest.raises(ValueError, match=r"arrays.npz: inputs: non-finite value inf"):
        load_trace(saved)


def test_load_corrupt_and_truncated_npz(saved):
    npz = saved / "arrays.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as ei:
        load_trace(saved)
    assert "arrays.npz" in one_line(ei) and "corrupt or truncated" in one_line(ei)
    npz.write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_trace(saved)
    # a valid zip whose member is damaged
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("__inputs__.npy", b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_trace(saved)
    npz.unlink()
    with pytest.raises(ValueError, match="array file missing"):
        load_trace(saved)


# ---------------------------------------------------------------------------------------
# bundled traces

@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_trace(name):
    t = load_trace(TRACES / name)
    assert t.labels is not None and len(t.labels) == len(t.inputs) >= 400
    assert t.quant == {"input": {"format": "fp16", "scale": "none"},
                       "weight": {"format": "fp16", "scale": "none"}}
    # stored values are fp16 already, so quantising them changes nothing
    assert np.array_equal(t.inputs.astype(np.float16).astype(np.float64), t.inputs)
    for a in t.arrays.values():
        assert np.array_equal(a.astype(np.float16).astype(np.float64), a)
    assert t.accuracy(forward64(t)) == t.reference_accuracy
    assert t.reference_accuracy > 0.9


def test_bundled_shapes():
    t = load_trace(TRACES / "mnist-mlp-relu")
    assert [t.arrays[t.node(n).inputs[1]].shape for n in t.matmul_layers()] == \
        [(512, 784), (512, 512), (10, 512)]
    assert [n.op for n in load_trace(TRACES / "mnist-mlp-tanh").graph.nodes].count("Tanh") == 2
    assert "Conv" in [n.op for n in load_trace(TRACES / "mnist-cnn").graph.nodes]


def test_traces_folder_small():
    total = sum(p.stat().st_size for p in TRACES.rglob("*") if p.is_file())
    assert total < 20e6, total
