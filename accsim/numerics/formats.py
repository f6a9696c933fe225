"""Number formats: frozen values describing what a register can hold.

Bit counting conventions (used everywhere in accsim):

* ``man_bits`` counts the *stored* fraction bits; the hidden bit is not counted.
  The precision is ``p = man_bits + 1`` significant bits.
* ``bits`` (total width) counts the sign bit, exponent bits and fraction bits of a
  floating-point format, and all bits (sign included) of an integer/fixed format.
* Exponents (``emin``, ``emax``) are unbiased: the smallest normal is ``2**emin``,
  the largest finite value is ``max_finite`` with exponent ``emax``.

Special-value encodings of a :class:`FloatFormat` (``specials``):

``"ieee"``
    Infinities and NaNs at the all-ones exponent field (IEEE 754).
``"fn"``
    Finite + NaN: no infinity; NaN only at the all-ones pattern (exponent and fraction
    all ones), as OCP e4m3fn (max 448).
``"fnuz"``
    Finite, NaN, unsigned zero: no infinity, no -0; the -0 pattern is the single NaN;
    default bias is one more than IEEE's (e4m3fnuz max 240).
``"none"``
    Every pattern is a finite number (no infinity, no NaN), as OCP MX FP6/FP4
    (e2m1 max 6, e3m2 max 28, e2m3 max 7.5). Such formats must saturate on overflow,
    and NaN inputs are refused.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Optional, Union

ROUNDING_MODES = ("rne", "rna", "rz", "ru", "rd", "ro", "sr")
FLOAT_OVERFLOW = ("inf", "saturate")
INT_OVERFLOW = ("wrap", "saturate")
SPECIALS = ("ieee", "fn", "fnuz", "none")

# Kernel-facing integer codes of the rounding modes (the kernels take theirs from here).
MODE_CODES = {m: i for i, m in enumerate(ROUNDING_MODES)}


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {value}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def rounding_code(rounding: str) -> int:
    """Kernel code of a rounding-mode name; ValueError naming the valid modes otherwise."""
    _check_choice("rounding", rounding, ROUNDING_MODES)
    return MODE_CODES[rounding]


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format whose values all fit in float64.

    Parameters
    ----------
    exp_bits : int
        Exponent field width in bits (1..11; at least 2 for ``specials="ieee"``).
    man_bits : int
        Stored fraction bits, hidden bit excluded (0..52). Precision p = man_bits + 1.
    subnormals : bool
        Whether the exponent-field-zero encodings are subnormal numbers. When False,
        a result is rounded to p bits as if the exponent range were unbounded below and
        then, if its magnitude is below the smallest normal, flushed to zero keeping its
        sign (flush-to-zero after rounding).
    specials : {"ieee", "fn", "fnuz", "none"}
        Special-value encoding (see module docstring).
    overflow : {"inf", "saturate"}
        "inf": IEEE behaviour (round-to-nearest overflows to infinity, directed modes
        may give the largest finite value); in a format without infinity the infinite
        result is NaN. "saturate": clamp to +-max_finite.
    bias : int, optional
        Exponent bias; default 2**(exp_bits-1) - 1 (+1 for "fnuz").
    name : str, optional
        A display name; not part of equality.
    """

    exp_bits: int
    man_bits: int
    _: KW_ONLY
    subnormals: bool = True
    specials: str = "ieee"
    overflow: str = "inf"
    bias: Optional[int] = None
    name: Optional[str] = None

    def __post_init__(self):
        _check_int("exp_bits", self.exp_bits, 1, 11)
        _check_int("man_bits", self.man_bits, 0, 52)
        if not isinstance(self.subnormals, bool):
            raise ValueError(f"subnormals: expected true or false, got {self.subnormals!r}")
        _check_choice("specials", self.specials, SPECIALS)
        _check_choice("overflow", self.overflow, FLOAT_OVERFLOW)
        if self.specials == "ieee" and self.exp_bits < 2:
            raise ValueError("exp_bits: an IEEE-style format needs at least 2 exponent bits")
        if self.specials == "fn" and self.exp_bits == 1 and self.man_bits == 0:
            raise ValueError("exp_bits/man_bits: e1m0 with specials 'fn' has no finite nonzero value")
        if self.specials == "none" and self.overflow != "saturate":
            raise ValueError(
                "overflow: a format with specials 'none' has neither infinity nor NaN; "
                "expected overflow 'saturate'")
        default_bias = (1 << (self.exp_bits - 1)) - 1 + (1 if self.specials == "fnuz" else 0)
        if self.bias is None:
            object.__setattr__(self, "bias", default_bias)
        else:
            _check_int("bias", self.bias, -2000, 2000)
        if self.name is not None and not isinstance(self.name, str):
            raise ValueError(f"name: expected a string, got {self.name!r}")
        # fit in float64
        if self.emax > 1023:
            raise ValueError(
                f"{self.label}: largest finite value 2^{self.emax} does not fit in float64 "
                "(emax must be <= 1023)")
        lowest = self.emin - self.man_bits if self.subnormals else self.emin
        if lowest < -1074 or self.emin < -1022 - 52:
            raise ValueError(
                f"{self.label}: smallest positive value 2^{lowest} does not fit in float64 "
                "(must be >= 2^-1074)")
        if self.emax < self.emin:
            raise ValueError(f"{self.label}: no normal numbers (emax < emin)")

    @property
    def label(self) -> str:
        """The name, or the spec ``eXmY`` (X exponent bits, Y stored fraction bits)."""
        return self.name or f"e{self.exp_bits}m{self.man_bits}"

    # equality by content: name is display only
    def __eq__(self, other):
        if not isinstance(other, FloatFormat):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def _key(self):
        return (self.exp_bits, self.man_bits, self.subnormals, self.specials, self.overflow,
                self.bias)

    def __repr__(self):
        parts = [f"exp_bits={self.exp_bits}", f"man_bits={self.man_bits}"]
        if not self.subnormals:
            parts.append("subnormals=False")
        if self.specials != "ieee":
            parts.append(f"specials={self.specials!r}")
        if self.overflow != "inf":
            parts.append(f"overflow={self.overflow!r}")
        default_bias = (1 << (self.exp_bits - 1)) - 1 + (1 if self.specials == "fnuz" else 0)
        if self.bias != default_bias:
            parts.append(f"bias={self.bias}")
        if self.name:
            parts.append(f"name={self.name!r}")
        return f"FloatFormat({', '.join(parts)})"

    # ---- derived values -------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "float"

    @property
    def precision(self) -> int:
        """Significant bits p = man_bits + 1 (hidden bit included)."""
        return self.man_bits + 1

    @property
    def bits(self) -> int:
        """Total width in bits: sign + exponent + stored fraction."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def _top_field(self) -> int:
        return (1 << self.exp_bits) - 1

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        top = self._top_field
        if self.specials == "ieee" or (self.specials == "fn" and self.man_bits == 0):
            top -= 1
        return top - self.bias

    @property
    def _max_significand(self) -> int:
        """Largest integer significand (hidden bit included) at exponent emax."""
        full = (1 << (self.man_bits + 1)) - 1
        if self.specials == "fn" and self.man_bits > 0:
            return full - 1
        return full

    @property
    def max_finite(self) -> float:
        """Largest finite value."""
        return math.ldexp(self._max_significand, self.emax - self.man_bits)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, 2**emin."""
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> Optional[float]:
        """Smallest positive subnormal value 2**(emin - man_bits); None without subnormals."""
        if not self.subnormals:
            return None
        return math.ldexp(1.0, self.emin - self.man_bits)

    @property
    def min_positive(self) -> float:
        """Smallest positive value (subnormal if enabled, else the smallest normal)."""
        return self.min_subnormal if self.subnormals else self.min_normal

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-p for round-to-nearest (directed modes: 2u)."""
        return math.ldexp(1.0, -self.precision)

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def has_negative_zero(self) -> bool:
        return self.specials != "fnuz"

    @property
    def num_values(self) -> int:
        """Number of distinct finite values (+0 and -0 counted once; inf/NaN excluded)."""
        normal_fields = self._top_field  # fields 1..top
        if self.specials == "ieee":
            normal_fields -= 1
        positive = normal_fields << self.man_bits
        if self.specials == "fn":
            positive -= 1
        if self.subnormals:
            positive += (1 << self.man_bits) - 1
        return 2 * positive + 1

    def describe(self) -> dict:
        """Parameters and derived values as a plain dict (for display / JSON)."""
        return {
            "name": self.name, "kind": "float", "exp_bits": self.exp_bits,
            "man_bits": self.man_bits, "bias": self.bias, "subnormals": self.subnormals,
            "specials": self.specials, "overflow": self.overflow, "bits": self.bits,
            "precision": self.precision, "emin": self.emin, "emax": self.emax,
            "max_finite": self.max_finite, "min_normal": self.min_normal,
            "min_subnormal": self.min_subnormal, "unit_roundoff": self.unit_roundoff,
            "num_values": self.num_values,
        }


class _IntegerLike:
    """Shared derived values of integer and fixed-point formats."""

    def _validate(self):
        _check_int("bits", self.bits, 2, 64)
        _check_int("frac_bits", self.frac_bits, -900, 1000)
        if not isinstance(self.signed, bool):
            raise ValueError(f"signed: expected true or false, got {self.signed!r}")
        _check_choice("overflow", self.overflow, INT_OVERFLOW)
        if self.name is not None and not isinstance(self.name, str):
            raise ValueError(f"name: expected a string, got {self.name!r}")

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__,) + self._key())

    def _key(self):
        return (self.bits, self.frac_bits, self.signed, self.overflow)

    @property
    def label(self) -> str:
        """The name, or the spec: ``intN`` / ``uintN`` (N bits including the sign bit) for
        integers, ``fixedN.F`` (F fraction bits) for fixed point."""
        if self.name:
            return self.name
        if self.frac_bits == 0 and type(self).__name__ == "IntFormat":
            return f"{'' if self.signed else 'u'}int{self.bits}"
        return f"{'' if self.signed else 'u'}fixed{self.bits}.{self.frac_bits}"

    def _repr_tail(self):
        parts = []
        if not self.signed:
            parts.append("signed=False")
        if self.overflow != "wrap":
            parts.append(f"overflow={self.overflow!r}")
        if self.name:
            parts.append(f"name={self.name!r}")
        return parts

    @property
    def min_int(self) -> int:
        """Smallest stored integer."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        """Largest stored integer."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def resolution(self) -> float:
        """Value of one least-significant bit, 2**-frac_bits."""
        return math.ldexp(1.0, -self.frac_bits)

    @property
    def max_finite(self) -> float:
        """Largest value, max_int * 2**-frac_bits (as float64: rounded if max_int has more
        than 53 significant bits)."""
        return math.ldexp(float(self.max_int), -self.frac_bits)

    @property
    def min_value(self) -> float:
        """Smallest (most negative) value."""
        return math.ldexp(float(self.min_int), -self.frac_bits)

    @property
    def min_positive(self) -> float:
        return self.resolution

    @property
    def unit_roundoff(self) -> float:
        """Absolute error bound of round-to-nearest: half a resolution step."""
        return self.resolution / 2

    @property
    def num_values(self) -> int:
        """Number of distinct values, 2**bits."""
        return 1 << self.bits

    def describe(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "bits": self.bits}
        if self.kind == "fixed":
            d["frac_bits"] = self.frac_bits
        d.update({
            "signed": self.signed, "overflow": self.overflow,
            "min_int": self.min_int, "max_int": self.max_int,
            "resolution": self.resolution, "max_finite": self.max_finite,
            "min_value": self.min_value, "num_values": self.num_values,
        })
        return d


@dataclass(frozen=True, eq=False, repr=False)
class FixedFormat(_IntegerLike):
    """Two's-complement fixed point: an integer of ``bits`` bits scaled by 2**-frac_bits.

    ``bits`` counts every bit including the sign bit (2..64). ``frac_bits`` is the number
    of bits right of the binary point (may be negative or exceed ``bits``).
    ``signed=False`` gives an unsigned integer of ``bits`` bits.
    ``overflow``: "wrap" (modulo 2**bits) or "saturate" (clamp to the range).
    """

    bits: int
    frac_bits: int
    _: KW_ONLY
    signed: bool = True
    overflow: str = "wrap"
    name: Optional[str] = None

    def __post_init__(self):
        self._validate()

    def __repr__(self):
        parts = [f"bits={self.bits}", f"frac_bits={self.frac_bits}"] + self._repr_tail()
        return f"FixedFormat({', '.join(parts)})"

    @property
    def kind(self) -> str:
        return "fixed"


@dataclass(frozen=True, eq=False, repr=False)
class IntFormat(_IntegerLike):
    """A ``bits``-bit two's-complement integer (2..64 bits, sign bit included).

    ``overflow``: "wrap" (modulo 2**bits, as integer hardware does) or "saturate".
    """

    bits: int
    _: KW_ONLY
    signed: bool = True
    overflow: str = "wrap"
    name: Optional[str] = None

    def __post_init__(self):
        self._validate()

    def __repr__(self):
        parts = [f"bits={self.bits}"] + self._repr_tail()
        return f"IntFormat({', '.join(parts)})"

    @property
    def frac_bits(self) -> int:
        """Always 0 for integers."""
        return 0

    @property
    def kind(self) -> str:
        return "int"


Format = Union[FloatFormat, FixedFormat, IntFormat]
