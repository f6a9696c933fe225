"""Accelerators: what a MAC array multiplies, how it accumulates, and how big it is.

An :class:`Accelerator` is a frozen value holding

* the operand formats (``input`` activations, ``weight``),
* how products reach the adder (``product``: ``"exact"``, ``"fused"`` or ``"rounded"``
  to ``product_format``),
* the *narrow* accumulator (the cheap one every output goes through) and its rounding,
* the *wide* accumulator (where selected outputs are re-issued, and the promotion target
  of a ``"chunked"`` structure) and its rounding,
* the accumulation structure (``sequential``, ``chunked``, ``tree``, ``fused``),
* the array geometry used by the cost model (``rows`` x ``cols`` MACs, ``dataflow``,
  ``clock_ghz``).

It is read from a versioned YAML document (built-ins in ``formats/accelerators/``)::

    kind: accelerator
    version: 1
    name: fp8-hopper                 # optional, default: the file name
    description: ...
    operands: {input: fp8_e4m3fn, weight: fp8_e4m3fn}
    product: {mode: exact}           # exact | fused | rounded (+ format, rounding)
    narrow: {format: e8m13, rounding: rz}          # optional overflow: override
    wide: {format: fp32, rounding: rne}
    structure: {kind: chunked, chunk_size: 128, promotion: outside}
    array: {rows: 16, cols: 16, dataflow: os, clock_ghz: 1.83}
    pricing: {refetch: buffer, estimator: auto}    # optional, how re-issues are priced

``structure.promotion`` (``chunked`` only) says where the wide promotion adder lives,
which decides the area and energy the cost model charges for it
(:mod:`accsim.hardware.pricing`): ``per-pe`` (a wide adder in every processing
element), ``per-row`` / ``per-column`` (ceil(cols / L) resp. ceil(rows / L) wide adders
shared by each array row / column, L the chunk size) or ``outside`` (the default: a pool
of ceil(rows*cols / L) wide adders outside the array, as in FP8 GEMMs on NVIDIA Hopper
that promote the tensor core's partial sums into fp32 registers of the CUDA cores every
L = 128 terms: DeepSeek-AI, "DeepSeek-V3 Technical Report", 2024, sec. 3.3.2). The
numerics are the same wherever the adder is.

``pricing`` (optional) states how the cost model prices re-issues: ``refetch``
(``buffer``: a re-issued output's operands are read again from an SRAM buffer, the
default; ``pe``: they are still in PE registers; ``none``: free) and ``estimator``
(``auto``, the default: the hardware of the policy's own estimator; or one of
:data:`ESTIMATOR_HARDWARE` to price every run's re-issue decision with that hardware).

A format is a built-in name or spec string (``fp16``, ``e8m13``, ``int24``), a path to a
``number_format`` YAML file (relative to the accelerator file), or an inline mapping with
the keys of a ``number_format`` document. Every error is a ``ValueError`` naming the file
and the key path.

:meth:`Accelerator.describe` returns the same document as a plain dict; loading it back
gives an equal accelerator.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Optional, get_args

import numpy as np

from ..numerics.config import (
    ConfigError,
    Doc,
    builtin_files,
    format_from_doc,
    header,
    load_format,
    read_yaml,
    yaml_source,
)
from ..numerics.datapath import ALIGN_ROUNDINGS, STRUCTURES, Datapath
from ..numerics.engine import matmul
from ..numerics.formats import (
    FLOAT_OVERFLOW,
    INT_OVERFLOW,
    ROUNDING_MODES,
    FloatFormat,
    Format,
    IntFormat,
)
from ..numerics.rounding import quantize
from .options import DEFAULT_PROMOTION, PRICING_ESTIMATORS, PROMOTIONS, REFETCH
from .technology import only_keys

PRODUCT_MODES = ("exact", "fused", "rounded")
DATAFLOWS = ("os", "ws", "is")
# structures the engine supports for integer / fixed-point accumulators
_INTEGER_STRUCTURES = ("sequential", "chunked")

_MAX_TERMS = 1 << 16
_MAX_GUARD_BITS = 64
_MAX_CHUNK = 1 << 30
_MAX_ARRAY = 1 << 20


def _is_format(v):
    """True for a value of one of the format classes (FloatFormat, IntFormat, FixedFormat)."""
    return isinstance(v, get_args(Format))


def _positive_int(name, v, hi):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= hi:
        raise ValueError(f"{name}: expected a positive integer (at most {hi}), got {v!r}")


def _choice(name, v, choices):
    if v not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {v!r}")


def _narrower(wide, narrow):
    """Why ``wide`` cannot hold every value of ``narrow`` (None if it can)."""
    if isinstance(narrow, FloatFormat) != isinstance(wide, FloatFormat):
        kind = "a floating-point" if isinstance(narrow, FloatFormat) else "an integer/fixed-point"
        return f"expected {kind} format like the narrow accumulator, got {wide.label}"
    if isinstance(narrow, FloatFormat):
        if wide.man_bits < narrow.man_bits:
            return (f"{wide.label} has fewer fraction bits ({wide.man_bits}) than the "
                    f"narrow accumulator {narrow.label} ({narrow.man_bits})")
        if wide.emax < narrow.emax or wide.min_positive > narrow.min_positive:
            return (f"{wide.label} has a smaller exponent range than the narrow "
                    f"accumulator {narrow.label}")
        return None
    # integer / fixed point: integer bits and fraction bits must both be at least as many
    wi, ni = wide.bits - wide.frac_bits, narrow.bits - narrow.frac_bits
    if wi < ni or wide.frac_bits < narrow.frac_bits or (narrow.signed and not wide.signed):
        return (f"{wide.label} cannot hold every value of the narrow accumulator "
                f"{narrow.label}")
    return None


@dataclass(frozen=True)
class Accelerator:
    """A MAC array: operand formats, narrow and wide accumulators, structure, geometry.

    Parameters
    ----------
    input, weight : Format
        Formats of the activations (left operand ``a``) and weights (right operand ``b``).
    narrow : Format
        The accumulator every output is computed in.
    wide : Format
        The accumulator selected outputs are re-issued to; also the promotion target of
        the ``"chunked"`` structure. Must hold every value of ``narrow`` (same family,
        at least as many fraction bits and as much range).
    narrow_rounding, wide_rounding : str
        Rounding modes of the two accumulators (``accsim.ROUNDING_MODES``).
    product : {"exact", "fused", "rounded"}
        "exact"/"fused": the adder sees the exact product; "rounded": the product is first
        rounded to ``product_format`` with ``product_rounding`` (None: ``narrow_rounding``).
    structure : {"sequential", "chunked", "tree", "fused"}
        See :mod:`accsim.numerics.engine`. ``chunk_size`` is required by (and only allowed with)
        "chunked"; ``terms`` and ``guard_bits`` by "fused", whose ``align_rounding``
        defaults to "rz". Integer/fixed accumulators support "sequential" and "chunked".
    rows, cols, dataflow, clock_ghz
        Array geometry for the cost model: rows x cols MAC units, dataflow "os"
        (output-stationary), "ws" (weight-stationary) or "is" (input-stationary),
        clock in GHz. The defaults describe a single MAC at 1 GHz.
    promotion : {"per-pe", "per-row", "per-column", "outside"}
        ``chunked`` only: where the wide promotion adder lives (cost model only;
        default :data:`DEFAULT_PROMOTION`).
    refetch : {"buffer", "pe", "none"}
        Cost model: where a re-issued output's operands come back from.
    estimator_hardware : str
        Cost model: "auto" (the policy's own estimator) or a key of
        :data:`ESTIMATOR_HARDWARE`.
    name, description
        Display only (``name`` is part of equality, ``source`` is not).
    """

    input: Format
    weight: Format
    narrow: Format
    wide: Format
    _: KW_ONLY
    name: str = "custom"
    description: Optional[str] = None
    narrow_rounding: str = "rne"
    wide_rounding: str = "rne"
    product: str = "exact"
    product_format: Optional[Format] = None
    product_rounding: Optional[str] = None
    structure: str = "sequential"
    chunk_size: Optional[int] = None
    terms: Optional[int] = None
    guard_bits: Optional[int] = None
    align_rounding: Optional[str] = None
    rows: int = 1
    cols: int = 1
    dataflow: str = "os"
    clock_ghz: float = 1.0
    promotion: Optional[str] = None
    refetch: str = "buffer"
    estimator_hardware: str = "auto"
    source: Optional[str] = field(default=None, compare=False)

    def __post_init__(self):
        self._check_formats()
        self._check_product()
        self._check_structure()
        self._check_array()
        self._check_pricing()

    def _check_pricing(self):
        """Promotion location (``chunked`` only; sets the default) and pricing options."""
        if self.structure == "chunked":
            if self.promotion is None:
                object.__setattr__(self, "promotion", DEFAULT_PROMOTION)
            _choice("promotion", self.promotion, PROMOTIONS)
        elif self.promotion is not None:
            raise ValueError(f"promotion: only used by structure 'chunked' "
                             f"(structure is {self.structure!r})")
        _choice("refetch", self.refetch, REFETCH)
        _choice("estimator_hardware", self.estimator_hardware, PRICING_ESTIMATORS)

    def _check_formats(self):
        """Formats and roundings; the operands an accumulator takes; wide holds narrow."""
        for f in ("input", "weight", "narrow", "wide"):
            v = getattr(self, f)
            if not _is_format(v):
                raise ValueError(
                    f"{f}: expected a FloatFormat, IntFormat or FixedFormat, got {v!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        if self.description is not None and not isinstance(self.description, str):
            raise ValueError(f"description: expected a string, got {self.description!r}")
        _choice("narrow_rounding", self.narrow_rounding, ROUNDING_MODES)
        _choice("wide_rounding", self.wide_rounding, ROUNDING_MODES)

        # integer / fixed-point accumulators take integer / fixed-point operands
        if not isinstance(self.narrow, FloatFormat):
            for f in ("input", "weight"):
                op = getattr(self, f)
                if isinstance(op, FloatFormat):
                    raise ValueError(
                        f"{f}: an integer/fixed-point accumulator "
                        f"({self.narrow.label}) needs integer or fixed-point operands, "
                        f"got {op.label}")
                if isinstance(self.narrow, IntFormat) and op.frac_bits > 0:
                    raise ValueError(
                        f"{f}: an integer accumulator ({self.narrow.label}) needs "
                        f"integer operands, got {op.label} with {op.frac_bits} "
                        "fraction bits")
        why = _narrower(self.wide, self.narrow)
        if why:
            raise ValueError(f"wide: {why}")

    def _check_product(self):
        _choice("product", self.product, PRODUCT_MODES)
        if self.product == "rounded":
            if not isinstance(self.narrow, FloatFormat):
                raise ValueError(
                    f"product: an integer/fixed-point accumulator ({self.narrow.label}) "
                    "takes exact products (each rounded to its grid); expected exact or fused")
            if self.product_format is None:
                raise ValueError("product_format: missing (required by product mode 'rounded')")
            if not _is_format(self.product_format):
                raise ValueError(f"product_format: expected a FloatFormat, IntFormat or "
                                 f"FixedFormat, got {self.product_format!r}")
            if self.product_rounding is not None:
                _choice("product_rounding", self.product_rounding, ROUNDING_MODES)
        else:
            for f in ("product_format", "product_rounding"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only used by product mode 'rounded' "
                                     f"(product mode is {self.product!r})")

    def _check_structure(self):
        """The structure and its parameters (sets ``align_rounding``'s default "rz")."""
        _choice("structure", self.structure, STRUCTURES)
        if not isinstance(self.narrow, FloatFormat) and self.structure not in _INTEGER_STRUCTURES:
            raise ValueError(
                f"structure: an integer/fixed-point accumulator supports "
                f"{' or '.join(_INTEGER_STRUCTURES)}, got {self.structure!r}")
        if self.structure == "chunked":
            if self.chunk_size is None:
                raise ValueError("chunk_size: missing (required by structure 'chunked')")
            _positive_int("chunk_size", self.chunk_size, _MAX_CHUNK)
        elif self.chunk_size is not None:
            raise ValueError(f"chunk_size: only used by structure 'chunked' "
                             f"(structure is {self.structure!r})")
        if self.structure == "fused":
            if self.terms is None:
                raise ValueError("terms: missing (required by structure 'fused')")
            _positive_int("terms", self.terms, _MAX_TERMS)
            if self.guard_bits is None:
                raise ValueError("guard_bits: missing (required by structure 'fused')")
            g = self.guard_bits
            if isinstance(g, bool) or not isinstance(g, numbers.Integral) \
                    or not 0 <= g <= _MAX_GUARD_BITS:
                raise ValueError(f"guard_bits: expected an integer in [0, {_MAX_GUARD_BITS}], "
                                 f"got {g!r}")
            if self.align_rounding is None:
                object.__setattr__(self, "align_rounding", "rz")
            _choice("align_rounding", self.align_rounding, ALIGN_ROUNDINGS)
        else:
            for f in ("terms", "guard_bits", "align_rounding"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only used by structure 'fused' "
                                     f"(structure is {self.structure!r})")

    def _check_array(self):
        """Array geometry (stores ``clock_ghz`` as a float)."""
        _positive_int("rows", self.rows, _MAX_ARRAY)
        _positive_int("cols", self.cols, _MAX_ARRAY)
        _choice("dataflow", self.dataflow, DATAFLOWS)
        c = self.clock_ghz
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) \
                or c <= 0:
            raise ValueError(f"clock_ghz: expected a positive number, got {c!r}")
        object.__setattr__(self, "clock_ghz", float(c))

    # ---- derived --------------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Number of MAC units, rows * cols."""
        return self.rows * self.cols

    @property
    def effective_product_rounding(self) -> Optional[str]:
        """Rounding of products to ``product_format`` (None unless product is 'rounded')."""
        if self.product != "rounded":
            return None
        return self.product_rounding or self.narrow_rounding

    # ---- engine ---------------------------------------------------------------------
    def datapath(self, which: str = "narrow") -> Datapath:
        """The :class:`~accsim.numerics.datapath.Datapath` of one accumulator: what
        :func:`accsim.numerics.engine.matmul` takes as ``acc``.

        ``which="narrow"``: the narrow accumulator with this accelerator's product mode
        and structure (chunked promotes into ``wide``). ``which="wide"``: the wide
        accumulator (re-issued outputs), exact products, sequential. Both carry the
        operand formats.
        """
        if which == "wide":
            return Datapath(self.wide, rounding=self.wide_rounding, input=self.input,
                            weight=self.weight)
        if which != "narrow":
            raise ValueError(f"which: expected 'narrow' or 'wide', got {which!r}")
        chunked = self.structure == "chunked"
        return Datapath(
            self.narrow, rounding=self.narrow_rounding,
            product=self.product_format if self.product == "rounded" else self.product,
            product_rounding=self.effective_product_rounding, structure=self.structure,
            chunk_size=self.chunk_size, wide=self.wide if chunked else None,
            wide_rounding=self.wide_rounding if chunked else None, terms=self.terms,
            guard_bits=self.guard_bits, align_rounding=self.align_rounding,
            input=self.input, weight=self.weight)

    def matmul_kwargs(self, which: str = "narrow") -> dict:
        """Keyword arguments of :func:`accsim.numerics.engine.matmul` for one datapath.

        Kept for compatibility: derived from :meth:`datapath` (the primary description,
        which ``matmul`` takes whole as ``acc``). The accumulator format is under
        ``"acc"``; ``"product"`` is the mode, or the product format (then with
        ``"product_rounding"``); the chunked and fused parameters appear only for those
        structures. ``which="wide"`` gives acc, rounding, structure "sequential" and
        product "exact".
        """
        dp = self.datapath(which)
        kw = {"acc": dp.acc, "rounding": dp.rounding, "structure": dp.structure,
              "product": dp.product}
        if dp.rounded_product:
            kw["product_rounding"] = dp.product_rounding
        if dp.structure == "chunked":
            kw.update(chunk_size=dp.chunk_size, wide=dp.wide, wide_rounding=dp.wide_rounding)
        elif dp.structure == "fused":
            kw.update(terms=dp.terms, guard_bits=dp.guard_bits,
                      align_rounding=dp.align_rounding)
        return kw

    def check_operands(self, a, b):
        """Raise ValueError unless every entry of ``a`` is a value of ``input`` and every
        entry of ``b`` a value of ``weight``; returns both as float64 arrays."""
        return (_check_operand("a", a, self.input, "input"),
                _check_operand("b", b, self.weight, "weight"))

    def matmul(self, a, b, *, which: str = "narrow", bias=None, select=None, seed=None):
        """``a @ b`` on this accelerator's narrow (or wide) datapath.

        ``a`` (m, k) must hold values of the input format and ``b`` (k, n) values of the
        weight format (quantize them first); ``bias``, ``select`` and ``seed`` are passed
        to :func:`accsim.numerics.engine.matmul`, whose result is returned.
        """
        dp = self.datapath(which)
        a, b = self.check_operands(a, b)
        return matmul(a, b, dp, bias=bias, select=select, seed=seed)

    # ---- display --------------------------------------------------------------------
    def describe(self) -> dict:
        """The accelerator as a ``kind: accelerator`` document (a plain, JSON-able dict).

        Formats appear as their built-in name or spec string when that names an equal
        format, otherwise as an inline mapping. Loading the document back (YAML or JSON)
        gives an equal accelerator.
        """
        d = {"kind": "accelerator", "version": 1, "name": self.name}
        if self.description is not None:
            d["description"] = self.description
        d["operands"] = {"input": _format_entry(self.input),
                         "weight": _format_entry(self.weight)}
        prod = {"mode": self.product}
        if self.product == "rounded":
            prod["format"] = _format_entry(self.product_format)
            if self.product_rounding is not None:
                prod["rounding"] = self.product_rounding
        d["product"] = prod
        d["narrow"] = {"format": _format_entry(self.narrow), "rounding": self.narrow_rounding}
        d["wide"] = {"format": _format_entry(self.wide), "rounding": self.wide_rounding}
        st = {"kind": self.structure}
        if self.structure == "chunked":
            st["chunk_size"] = self.chunk_size
            st["promotion"] = self.promotion
        elif self.structure == "fused":
            st.update(terms=self.terms, guard_bits=self.guard_bits,
                      align_rounding=self.align_rounding)
        d["structure"] = st
        d["array"] = {"rows": self.rows, "cols": self.cols, "dataflow": self.dataflow,
                      "clock_ghz": self.clock_ghz}
        d["pricing"] = {"refetch": self.refetch, "estimator": self.estimator_hardware}
        return d


def _check_operand(arg, x, fmt, role):
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg}: expected numbers convertible to float64 ({exc})") from None
    label = fmt.label
    try:
        q = quantize(arr, fmt)
    except ValueError as exc:
        raise ValueError(f"{arg}: not representable in the {role} format {label} "
                         f"({str(exc).splitlines()[0]})") from None
    q = np.asarray(q, dtype=np.float64)
    same = (q == arr) | (np.isnan(q) & np.isnan(arr))
    if not same.all():
        bad = np.argwhere(~same)[0] if arr.ndim else ()
        idx = ", ".join(str(int(i)) for i in bad)
        v = arr[tuple(bad)] if arr.ndim else float(arr)
        n = int((~same).sum())
        raise ValueError(
            f"{arg}: {n} entr{'y is' if n == 1 else 'ies are'} not representable in the "
            f"{role} format {label} (first: {arg}[{idx}] = {float(v)!r}); quantize the "
            f"operand to {label} first")
    return arr


_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def _format_entry(fmt):
    """A format for a document: its name when that loads back to an equal format, else an
    inline mapping."""
    if fmt.name and _SIMPLE_NAME.match(fmt.name):
        try:
            if load_format(fmt.name) == fmt:
                return fmt.name
        except ValueError:
            pass
    if isinstance(fmt, FloatFormat):
        d = {"type": "float", "exp_bits": fmt.exp_bits, "man_bits": fmt.man_bits,
             "subnormals": fmt.subnormals, "specials": fmt.specials,
             "overflow": fmt.overflow, "bias": fmt.bias}
    elif isinstance(fmt, IntFormat):
        d = {"type": "int", "bits": fmt.bits, "signed": fmt.signed, "overflow": fmt.overflow}
    else:
        d = {"type": "fixed", "bits": fmt.bits, "frac_bits": fmt.frac_bits,
             "signed": fmt.signed, "overflow": fmt.overflow}
    if fmt.name:
        d = {"name": fmt.name, **d}
    return d


# ---------------------------------------------------------------------------------------
# YAML

# Accelerator field -> key path in the document (for errors raised by __post_init__).
_KEY_OF_FIELD = {
    "name": "name", "description": "description",
    "input": "operands.input", "weight": "operands.weight",
    "narrow": "narrow.format", "narrow_rounding": "narrow.rounding",
    "wide": "wide.format", "wide_rounding": "wide.rounding",
    "product": "product.mode", "product_format": "product.format",
    "product_rounding": "product.rounding",
    "structure": "structure.kind", "chunk_size": "structure.chunk_size",
    "terms": "structure.terms", "guard_bits": "structure.guard_bits",
    "align_rounding": "structure.align_rounding",
    "rows": "array.rows", "cols": "array.cols", "dataflow": "array.dataflow",
    "clock_ghz": "array.clock_ghz", "promotion": "structure.promotion",
    "refetch": "pricing.refetch", "estimator_hardware": "pricing.estimator",
}

_ROUNDING_EXPECTED = "one of " + ", ".join(ROUNDING_MODES)


def _is_pos_int(v):
    return v >= 1


def _format_at(doc: Doc, key: str, base: Path, default=...):
    """A format at ``doc[key]``: a name / spec / path string or an inline mapping."""
    v = doc.get(key, (str, dict), default=default,
                expected="a format name, a number_format YAML path or a mapping")
    if v is None:
        return None
    if isinstance(v, dict):
        return format_from_doc(doc.sub(key))
    s = v
    if s.endswith((".yaml", ".yml")) or "/" in s:
        p = Path(s)
        if not p.is_absolute():
            p = base / p
        s = str(p)
    try:
        return load_format(s)
    except ValueError as exc:
        msg = str(exc).splitlines()[0]
        if msg.startswith("format: "):
            msg = msg[len("format: "):]
        raise doc.error(key, msg) from None


def _rounding_at(doc: Doc, key="rounding", default="rne"):
    return doc.get(key, str, default=default, check=lambda r: r in ROUNDING_MODES,
                   expected=_ROUNDING_EXPECTED)


def _accumulator_at(doc: Doc, key: str, base: Path):
    """``narrow`` / ``wide``: {format, rounding, overflow (optional override)}."""
    sub = doc.sub(key)
    only_keys(sub, ("format", "rounding", "overflow"))
    fmt = _format_at(sub, "format", base)
    rounding = _rounding_at(sub)
    policies = FLOAT_OVERFLOW if isinstance(fmt, FloatFormat) else INT_OVERFLOW
    ov = sub.get("overflow", str, default=None, check=lambda o: o in policies,
                 expected=f"one of {', '.join(policies)} for format {fmt.label}")
    sub.finish()
    if ov is not None and ov != fmt.overflow:
        suffix = {"saturate": "sat"}.get(ov, ov)
        try:
            fmt = dataclasses.replace(fmt, overflow=ov, name=f"{fmt.label}_{suffix}")
        except ValueError as exc:
            msg = str(exc)
            raise sub.error("overflow", msg.partition(": ")[2] or msg) from None
    return fmt, rounding


def _product_at(doc: Doc, base: Path):
    """``product``: (mode, format, rounding); format and rounding only for 'rounded'."""
    prod = doc.sub("product", default=None)
    product, product_format, product_rounding = "exact", None, None
    if prod is None:
        return product, product_format, product_rounding
    only_keys(prod, ("mode", "format", "rounding"))
    product = prod.get("mode", str, check=lambda m: m in PRODUCT_MODES,
                       expected="one of " + ", ".join(PRODUCT_MODES))
    if product == "rounded":
        product_format = _format_at(prod, "format", base)
        product_rounding = _rounding_at(prod, default=None)
    else:
        for k in ("format", "rounding"):
            if prod.has(k):
                raise prod.error(k, f"only used by product mode 'rounded' "
                                    f"(mode is {product!r})")
    prod.finish()
    return product, product_format, product_rounding


def _structure_at(doc: Doc):
    """``structure``: (kind, {its parameters as Accelerator fields})."""
    st = doc.sub("structure", default=None)
    structure = "sequential"
    extra = {}
    if st is None:
        return structure, extra
    only_keys(st, ("kind", "chunk_size", "terms", "guard_bits", "align_rounding",
                   "promotion"))
    structure = st.get("kind", str, check=lambda s: s in STRUCTURES,
                       expected="one of " + ", ".join(STRUCTURES))
    allowed = {"chunked": ("chunk_size", "promotion"),
               "fused": ("terms", "guard_bits", "align_rounding")}.get(structure, ())
    for k in ("chunk_size", "terms", "guard_bits", "align_rounding", "promotion"):
        if st.has(k) and k not in allowed:
            user = "chunked" if k in ("chunk_size", "promotion") else "fused"
            raise st.error(k, f"only used by structure kind '{user}' "
                              f"(kind is {structure!r})")
    if structure == "chunked":
        extra["chunk_size"] = st.get("chunk_size", int, check=_is_pos_int,
                                     expected="a positive integer")
        extra["promotion"] = st.get("promotion", str, default=DEFAULT_PROMOTION,
                                    check=lambda p: p in PROMOTIONS,
                                    expected="one of " + ", ".join(PROMOTIONS))
    elif structure == "fused":
        extra["terms"] = st.get("terms", int, check=_is_pos_int,
                                expected="a positive integer")
        extra["guard_bits"] = st.get("guard_bits", int, check=lambda g: g >= 0,
                                     expected="a non-negative integer")
        extra["align_rounding"] = st.get(
            "align_rounding", str, default="rz", check=lambda r: r in ALIGN_ROUNDINGS,
            expected="one of " + ", ".join(ALIGN_ROUNDINGS))
    st.finish()
    return structure, extra


def _array_at(doc: Doc):
    """``array``: {rows, cols, dataflow, clock_ghz}."""
    arr = doc.sub("array")
    only_keys(arr, ("rows", "cols", "dataflow", "clock_ghz"))
    rows = arr.get("rows", int, check=_is_pos_int, expected="a positive integer")
    cols = arr.get("cols", int, check=_is_pos_int, expected="a positive integer")
    dataflow = arr.get("dataflow", str, check=lambda d: d in DATAFLOWS,
                       expected="one of " + ", ".join(DATAFLOWS))
    clock = arr.get("clock_ghz", (int, float), check=lambda c: math.isfinite(c) and c > 0,
                    expected="a positive number")
    arr.finish()
    return {"rows": rows, "cols": cols, "dataflow": dataflow, "clock_ghz": clock}


def _pricing_at(doc: Doc):
    """``pricing`` (optional): {refetch, estimator_hardware} as Accelerator fields."""
    pr = doc.sub("pricing", default=None)
    if pr is None:
        return {}
    only_keys(pr, ("refetch", "estimator"))
    out = {"refetch": pr.get("refetch", str, default="buffer", check=lambda r: r in REFETCH,
                             expected="one of " + ", ".join(REFETCH)),
           "estimator_hardware": pr.get("estimator", str, default="auto",
                                        check=lambda e: e in PRICING_ESTIMATORS,
                                        expected="one of " + ", ".join(PRICING_ESTIMATORS))}
    pr.finish()
    return out


def accelerator_from_doc(doc: Doc, default_name: str, base: Path, source=None) -> Accelerator:
    """Build an :class:`Accelerator` from a ``kind: accelerator`` document."""
    header(doc, "accelerator")
    only_keys(doc, ("kind", "version", "name", "description", "operands", "product", "narrow",
                "wide", "structure", "array", "pricing"))
    name = doc.get("name", str, default=default_name, check=bool, expected="a non-empty string")
    description = doc.get("description", str, default=None)

    ops = doc.sub("operands")
    only_keys(ops, ("input", "weight"))
    inp = _format_at(ops, "input", base)
    wgt = _format_at(ops, "weight", base)
    ops.finish()

    narrow, narrow_rounding = _accumulator_at(doc, "narrow", base)
    wide, wide_rounding = _accumulator_at(doc, "wide", base)
    product, product_format, product_rounding = _product_at(doc, base)
    structure, extra = _structure_at(doc)
    array = _array_at(doc)
    pricing = _pricing_at(doc)
    doc.finish()

    try:
        return Accelerator(
            inp, wgt, narrow, wide, name=name, description=description,
            narrow_rounding=narrow_rounding, wide_rounding=wide_rounding,
            product=product, product_format=product_format,
            product_rounding=product_rounding, structure=structure, source=source,
            **array, **extra, **pricing)
    except ConfigError:
        raise
    except ValueError as exc:
        msg = str(exc)
        fld, _, rest = msg.partition(": ")
        if fld in _KEY_OF_FIELD:
            raise ConfigError(f"{doc.source}: key '{_KEY_OF_FIELD[fld]}': {rest}") from None
        raise ConfigError(f"{doc.source}: {msg}") from None


def _load_file(path: Path) -> Accelerator:
    doc = Doc(read_yaml(path), str(path))
    return accelerator_from_doc(doc, default_name=path.stem, base=path.parent,
                                source=str(path))


def list_accelerators():
    """Names of the built-in accelerators, sorted."""
    return sorted(builtin_files("accelerators"))


def load_accelerator(name_or_path) -> Accelerator:
    """An accelerator from a built-in name (``accsim accelerators list``) or a YAML path.

    An :class:`Accelerator` is returned unchanged.
    """
    if isinstance(name_or_path, Accelerator):
        return name_or_path
    src = yaml_source(name_or_path, "accelerators", "accelerator")
    if src is None:
        raise ValueError(
            f"accelerator: unknown accelerator {str(name_or_path)!r} (expected a built-in "
            f"name such as {', '.join(list_accelerators()[:4])}, or a YAML path)")
    if src in builtin_files("accelerators").values():
        return _load_builtin(src)
    return _load_file(src)


@functools.lru_cache(maxsize=None)
def _load_builtin(path: Path) -> Accelerator:
    """A built-in accelerator file, parsed once per process (the package's own data;
    an Accelerator is immutable)."""
    return _load_file(path)
