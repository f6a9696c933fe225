"""A network as a graph: ONNX-style nodes over named tensors, in topological order.

This is the in-memory form of a version-2 trace (and of a version-1 trace, converted on
read). Its vocabulary is ONNX's: a node's ``op`` is an ONNX operator type of the default
domain (``"Conv"``, ``"MatMul"``, ``"Relu"`` ...) and its ``attrs`` are that operator's
attributes with ONNX's names and meaning, with one normalisation: inputs that ONNX
defines as shape or axis parameters (``axes`` of Reduce*/Squeeze/Unsqueeze, ``split``,
``starts/ends/axes/steps`` of Slice, ``pads``/``constant_value`` of Pad, ``shape`` of
Reshape/Expand, ``min``/``max`` of Clip, ``repeats`` of Tile) are constant at import and
stored as attributes of the same name, whatever the opset (see :data:`PARAM_INPUTS`).

Tensors are named. Three kinds:

- the graph input (:attr:`Graph.input`), whose model shape (:attr:`Graph.input_shape`)
  includes the model's own batch axis when it has one (usually 1);
- arrays (weights, biases, other constants), stored with the trace by name;
- node outputs.

**The sample axis.** The simulator runs many samples at once without touching the model's
own shapes: every activation tensor carries one extra leading axis, the samples, in
front of the model's shape (a model input of shape ``(1, 3, 32, 32)`` becomes
``(S, 1, 3, 32, 32)`` for ``S`` samples). Operators receive every input with that axis
(arrays with a size-1 sample axis: ``a[None]``) and return outputs with it; an axis
attribute ``a`` of the model (negative ones counted from the end) is axis ``a + 1`` of
the array when ``a >= 0``. The model's own batch axis is never merged with the samples,
so a ``Reshape`` to ``(1, -1)`` written by an exporter means what it meant in the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: inputs that ONNX defines as shape/axis parameters, by op: (input position, attribute
#: name). The importer moves these (constant) inputs to attributes of the same name.
PARAM_INPUTS = {
    "ReduceMean": ((1, "axes"),), "ReduceSum": ((1, "axes"),), "ReduceMax": ((1, "axes"),),
    "ReduceMin": ((1, "axes"),), "ReduceProd": ((1, "axes"),),
    "ReduceL2": ((1, "axes"),), "ReduceSumSquare": ((1, "axes"),),
    "Squeeze": ((1, "axes"),), "Unsqueeze": ((1, "axes"),),
    "Split": ((1, "split"),),
    "Slice": ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")),
    "Pad": ((1, "pads"), (2, "constant_value"), (3, "axes")),
    "Reshape": ((1, "shape"),), "Expand": ((1, "shape"),), "Tile": ((1, "repeats"),),
    "Clip": ((1, "min"), (2, "max")),
}

#: ops computed as matrix products on the accelerator's datapath
PRODUCT_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose")


@dataclass(frozen=True)
class Node:
    """One operator application: ``outputs = op(inputs; attrs)``.

    ``name``: unique node name (the ONNX node name when imported; per-node results are
    keyed by it). ``inputs``: tensor names, ``""`` for an omitted optional input.
    ``attrs``: plain Python values (int, float, str, lists of them).
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "attrs", dict(self.attrs))

    @property
    def is_product(self) -> bool:
        """Whether the node is a matrix product run on the accelerator's datapath."""
        return self.op in PRODUCT_OPS


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order over named tensors; ``input`` the graph input tensor
    with model shape ``input_shape``; ``output`` the tensor whose rows are the network's
    output (flattened per sample to ``(S, classes)`` for accuracy and agreement)."""

    nodes: tuple[Node, ...]
    input: str
    input_shape: tuple[int, ...]
    output: str

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    def check(self, arrays, where="graph"):
        """Raise ``ValueError`` (one line naming the node) unless every node reads only
        the input, arrays or earlier outputs, every tensor is written once, node names are
        unique and ``output`` is produced."""
        known = {self.input} | set(arrays)
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise ValueError(f"{where}: node name {n.name!r} is used twice")
            names.add(n.name)
            for t in n.inputs:
                if t and t not in known:
                    raise ValueError(f"{where}: node {n.name} ({n.op}) reads {t!r}, which "
                                     f"is neither the input, an array nor an earlier output")
            for t in n.outputs:
                if t in known:
                    raise ValueError(f"{where}: node {n.name} ({n.op}) writes {t!r}, "
                                     f"which is already defined")
                known.add(t)
        if self.output not in known or self.output in arrays:
            raise ValueError(f"{where}: output {self.output!r} is not computed by any node")

    def producers(self) -> dict:
        """Tensor name -> the node writing it."""
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict:
        """Tensor name -> the nodes reading it, in order."""
        out = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    out.setdefault(t, []).append(n)
        return out

    def product_nodes(self) -> list:
        """The nodes run on the accelerator, in order."""
        return [n for n in self.nodes if n.is_product]
