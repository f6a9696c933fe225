"""Write the ONNX models of bench/bench_models.py into bench/models/ (git-ignored).

    /work/torchvenv/bin/python bench/make_models.py     # any venv with torch, torchvision,
                                                        # onnx, onnxscript, onnxruntime

torchvision's resnet18 (1000 classes) and mobilenet_v3_small (1000 classes), random weights
(seed 0, BatchNorm statistics calibrated on the inputs in train mode so activations keep a
realistic scale), at 1x3x64x64; each exported with the TorchScript exporter
(``dynamo=False``, opset 17) and the default dynamo exporter (opset 18), dynamic batch. Beside
them ``inputs.npy``: 16 float32 samples (16, 3, 64, 64), standard normal. torch is needed here
only; the benchmark reads the files with onnx / onnxruntime and accsim.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "models"
SEED = 0
N = 16
SIZE = 64


def calibrate_bn(model, x):
    """Running statistics of every BatchNorm from ``x`` (one cumulative train-mode pass)."""
    import torch
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def export(model, x, name):
    """TorchScript (opset 17) and dynamo (opset 18) exports with a dynamic batch axis."""
    import torch
    args = (x[:1],)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(OUT / f"{name}_ts17.onnx"), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
        torch.onnx.export(model, args, str(OUT / f"{name}_dyn18.onnx"), dynamo=True,
                          opset_version=18, input_names=["input"], output_names=["output"],
                          dynamic_shapes=({0: torch.export.Dim("N", min=1, max=1024)},))


def main():
    import torch
    from torchvision.models import mobilenet_v3_small, resnet18
    OUT.mkdir(exist_ok=True)
    x = np.random.default_rng(SEED).standard_normal((N, 3, SIZE, SIZE)).astype(np.float32)
    np.save(OUT / "inputs.npy", x)
    xt = torch.tensor(x)
    for name, make in (("resnet18", resnet18), ("mobilenet_v3_small", mobilenet_v3_small)):
        torch.manual_seed(SEED)
        export(calibrate_bn(make(), xt), xt, name)
        print(f"wrote {name}_ts17.onnx, {name}_dyn18.onnx")
    print(f"wrote {OUT / 'inputs.npy'} {x.shape}")


if __name__ == "__main__":
    main()
