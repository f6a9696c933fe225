"""The :class:`Datapath` value: everything that decides what a MAC array's register holds.

One frozen value travels unchanged from the accelerator YAML loader
(:meth:`accsim.hardware.accelerator.Accelerator.datapath`) through the network simulation
to the engine (:func:`accsim.numerics.engine.matmul` takes it as ``acc``);
:func:`accsim.numerics.engine.kernel_params` alone turns it into the kernels' parameters.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional, Union

from .config import load_format
from .formats import FixedFormat, FloatFormat, IntFormat, rounding_code

Format = Union[FloatFormat, IntFormat, FixedFormat]

STRUCTURES = ("sequential", "chunked", "tree", "fused")
"""How the K products of one output reach the register (see :mod:`accsim.numerics.engine`)."""
ALIGN_ROUNDINGS = ("rz", "rd", "rne")
"""How the fused multi-term adder drops addend bits below its alignment quantum."""
PRODUCTS = ("exact", "fused")
"""Product handling by name; a format instead means multiply-round-add."""

_FORMATS = (FloatFormat, IntFormat, FixedFormat)


def _resolve_format(f, name):
    if isinstance(f, _FORMATS):
        return f
    if isinstance(f, str):
        try:
            return load_format(f)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise ValueError(f"{name}: expected a format or a format name, got {f!r}")


def _count(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        what = "a positive integer" if lo == 1 else "a non-negative integer"
        raise ValueError(f"{name}: expected {what}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class Datapath:
    """One accumulation datapath of a MAC array (frozen, validated on construction).

    Parameters
    ----------
    acc : Format (or a format name)
        The accumulator register.
    rounding : str
        Rounding of every register add ("rne", "rna", "rz", "ru", "rd", "ro", "sr").
    product : "exact" | "fused" | Format
        "exact"/"fused": the adder sees the exact product. A format: each product is first
        rounded to it with ``product_rounding`` (default ``rounding``): multiply-round-add.
    structure : "sequential" | "chunked" | "tree" | "fused"
    chunk_size, wide, wide_rounding
        "chunked" only: L terms per chunk, promoted into the ``wide`` register (rounding
        ``wide_rounding``, default ``rounding``).
    terms, guard_bits, align_rounding
        "fused" only: T products per multi-term step, G guard bits, alignment rounding.
    input, weight : Format or None
        Operand formats, where known (an accelerator's); None: any float64 operand whose
        products the engine can hold exactly. Only descriptive: the engine checks the
        operands' bits it is given, not their format.

    Fields that do not apply to ``structure`` must stay None (an error otherwise), so
    two equal datapaths compute the same bits.
    """

    acc: Format
    rounding: str = "rne"
    product: Union[str, Format] = "exact"
    product_rounding: Optional[str] = None
    structure: str = "sequential"
    chunk_size: Optional[int] = None
    wide: Optional[Format] = None
    wide_rounding: Optional[str] = None
    terms: Optional[int] = None
    guard_bits: Optional[int] = None
    align_rounding: Optional[str] = None
    input: Optional[Format] = None
    weight: Optional[Format] = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("acc", _resolve_format(self.acc, "acc"))
        rounding_code(self.rounding)
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure: expected one of {', '.join(STRUCTURES)}, "
                             f"got {self.structure!r}")
        if isinstance(self.product, str) and self.product in PRODUCTS:
            if self.product_rounding is not None:
                raise ValueError("product_rounding: only meaningful with a product format")
        else:
            put("product", _resolve_format(self.product, "product"))
            put("product_rounding", self.product_rounding or self.rounding)
            rounding_code(self.product_rounding)
        if self.structure == "chunked":
            if isinstance(self.chunk_size, bool) or \
                    not isinstance(self.chunk_size, numbers.Integral) or self.chunk_size < 1:
                raise ValueError("chunk_size: expected a positive integer for structure "
                                 f"'chunked', got {self.chunk_size!r}")
            put("chunk_size", int(self.chunk_size))
            if self.wide is None:
                raise ValueError("wide: structure 'chunked' needs the wide (promotion) format")
            put("wide", _resolve_format(self.wide, "wide"))
            put("wide_rounding", self.wide_rounding or self.rounding)
            rounding_code(self.wide_rounding)
        else:
            for f in ("chunk_size", "wide", "wide_rounding"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only meaningful with structure 'chunked', "
                                     f"not {self.structure!r}")
        if self.structure == "fused":
            put("terms", _count("terms", 4 if self.terms is None else self.terms, 1))
            put("guard_bits", _count("guard_bits", 3 if self.guard_bits is None
                                     else self.guard_bits, 0))
            put("align_rounding", self.align_rounding or "rz")
            if self.align_rounding not in ALIGN_ROUNDINGS:
                raise ValueError(f"align_rounding: expected one of {', '.join(ALIGN_ROUNDINGS)}"
                                 f", got {self.align_rounding!r}")
        else:
            for f in ("terms", "guard_bits", "align_rounding"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only meaningful with structure 'fused', "
                                     f"not {self.structure!r}")
        for f in ("input", "weight"):
            v = getattr(self, f)
            if v is not None and not isinstance(v, _FORMATS):
                raise ValueError(f"{f}: expected a format or None, got {v!r}")

    @property
    def rounded_product(self) -> bool:
        """True when products are rounded to a format before the add."""
        return not isinstance(self.product, str)

    @classmethod
    def of(cls, acc, **kwargs) -> "Datapath":
        """A datapath from :func:`~accsim.numerics.engine.matmul`'s keywords, where the
        fused adder's ``terms``/``guard_bits``/``align_rounding`` defaults (4, 3, "rz")
        are given whatever the structure: those of another structure are dropped."""
        if kwargs.get("structure", "sequential") != "fused":
            for f, default in (("terms", 4), ("guard_bits", 3), ("align_rounding", "rz")):
                if kwargs.get(f, default) == default:
                    kwargs.pop(f, None)
        return cls(acc, **kwargs)
