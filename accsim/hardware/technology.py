"""Technology tables: the energy and area of arithmetic primitives, and how they scale.

A ``kind: technology`` YAML document (built-ins in ``formats/technology/``) lists
primitives with their energy per operation (``energy_pj``) and area (``area_um2``)::

    kind: technology
    version: 1
    name: my-28nm                  # optional, default: the file name
    description: ...
    node_nm: 28                    # optional
    primitives:
      int8_add: {energy_pj: 0.02, area_um2: 20, status: published, source: "synthesis"}
      fp32_mul: {...}
      register_bit: {...}          # one bit of register, per write
      sram_read_32b: {energy_pj: 5, status: published, source: ...}   # area optional

Primitive names: ``intN_add``, ``intN_mul`` (N-bit integer adder / N x N multiplier),
``<float>_add``, ``<float>_mul`` with ``<float>`` one of fp16, fp32, fp64, bf16, tf32 or
``eXmY``; ``register_bit``; memory entries ``sram_*`` / ``dram_*`` (energy only).
``sram_read_32b`` is what operand re-fetch from a buffer costs. Every entry says where
it comes from (``source``) and whether it is ``published`` or ``derived``.

Scaling rules (every rule goes exactly through the table's anchors)
-------------------------------------------------------------------
Each arithmetic kind is priced from its anchors as a function of one *size*:

* integer adders: size = width w in bits; piecewise linear between anchors, proportional
  to w beyond them (ripple/prefix adders and registers are linear in width: M. Horowitz,
  "Computing's energy problem", ISSCC 2014, int8/16/32 add ≈ 0.03/0.05/0.1 pJ, the
  anchors of ``formats/technology/horowitz-45nm.yaml``);
* registers: ``register_bit`` x bits (Accelergy's per-bit register model);
* integer multipliers: size = a*b (product of operand widths in bits; an array
  multiplier has a*b partial-product cells, Horowitz int8->int32 is 15.5x energy for 16x
  the cells); piecewise power law (log-log linear) between anchors;
* FP multipliers: size = pa*pb, the product of the significand widths p = man_bits + 1
  (fp16->fp32 area 4.7x vs (24/11)^2 = 4.76x); piecewise power law;
* FP adders: size S(e, p) = p*log2(p) + e (e: exponent bits): the alignment and
  normalisation shifters are p-bit barrel shifters of log2(p) stages (p*log2(p) muxes),
  leading-zero count and rounding scale the same way, and the exponent compare/subtract
  is an e-bit adder. Piecewise power law between anchors: with the fp16 (S = 43.05) and
  fp32 (S = 118.04) anchors of Horowitz this is E = 0.4 pJ * (S/43.05)^0.804 and
  A = 1360 um2 * (S/43.05)^1.114, exactly through both anchors. (A fit
  a + b*p*log2(p) + c*e through the same two points gives a negative constant or a
  negative exponent term for the areas, i.e. not monotone, hence the power law.)

Power-law pieces extrapolate beyond the outer anchors with the exponent of the nearest
segment (exponent 1 when a kind has a single anchor); linear pieces extrapolate in
proportion to width. Anchors must not decrease with size (checked on load), so every rule
is monotone in width.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Optional

from ..numerics.config import ConfigError, Doc, builtin_files, header, read_yaml, yaml_source

OPS = ("int_add", "int_mul", "fp_add", "fp_mul")
"""Arithmetic primitive kinds, each with its own scaling rule."""
STATUSES = ("published", "derived")

#: the built-in table that prices a run when none is named (``accsim simulate``,
#: ``accsim cost``, sweep specs)
DEFAULT_TECHNOLOGY = "horowitz-45nm"
"""Where a table entry comes from: a publication as is, or derived from one."""
FLOAT_NAMES = {"fp16": (5, 10), "fp32": (8, 23), "fp64": (11, 52), "bf16": (8, 7),
               "tf32": (8, 10)}
"""Float names usable in primitive keys and op specs: name -> (exp_bits, man_bits)."""

_ARITH_KEY = re.compile(r"^(int(\d+)|fp16|fp32|fp64|bf16|tf32|e(\d+)m(\d+))_(add|mul)$")
_MEMORY_KEY = re.compile(r"^(sram|dram)_[a-z0-9_]+$")
_WHAT = {"int_add": "integer adder", "int_mul": "integer multiplier",
         "fp_add": "floating-point adder", "fp_mul": "floating-point multiplier"}


# ---------------------------------------------------------------------------------------
# values

@dataclass(frozen=True)
class Cost:
    """Energy per operation (pJ) and area (um2) of one hardware unit."""

    energy_pj: float
    area_um2: float

    def __add__(self, other):
        return Cost(self.energy_pj + other.energy_pj, self.area_um2 + other.area_um2)

    def scale(self, energy=1.0, area=1.0):
        return Cost(self.energy_pj * energy, self.area_um2 * area)

    def as_dict(self):
        return {"energy_pj": self.energy_pj, "area_um2": self.area_um2}


ZERO = Cost(0.0, 0.0)


@dataclass(frozen=True)
class Primitive:
    """One row of a technology table."""

    name: str
    energy_pj: float
    area_um2: Optional[float]
    status: str
    source: str


@dataclass(frozen=True)
class Technology:
    """A technology table: primitives by name, plus where the table came from."""

    name: str
    primitives: dict
    description: Optional[str] = None
    node_nm: Optional[float] = None
    path: Optional[str] = field(default=None, compare=False)
    _anchors: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self):
        return f"technology '{self.name}'" + (f" ({self.path})" if self.path else "")

    def primitive(self, key, need=None) -> Primitive:
        """The entry ``key``, or a one-line error naming the table and the entry."""
        p = self.primitives.get(key)
        if p is None:
            why = f" (needed {need})" if need else ""
            raise ConfigError(f"{self.label}: no entry 'primitives.{key}'{why}")
        return p

    def cost_at(self, kind, spec, need=None) -> Cost:
        """Energy and area of an arithmetic primitive ``kind`` (one of :data:`OPS`) at the
        widths ``spec``, by the scaling rules (module docstring): ``(bits,)`` for
        ``int_add``, ``(bits_a, bits_b)`` for ``int_mul``, ``(exp_bits, p)`` for
        ``fp_add`` and ``(p_a, p_b)`` for ``fp_mul`` (p: significand bits, hidden bit
        included). ``need`` says who asks, for the error when the table has no anchor."""
        pts = self._need_anchor(kind, need)
        x = _size(kind, spec)
        linear = kind == "int_add"
        e = _interp([(s, e) for s, e, _, _ in pts], x, linear)
        a = _interp([(s, a) for s, _, a, _ in pts], x, linear)
        return Cost(e, a)

    def _need_anchor(self, kind, need):
        pts = self._anchors.get(kind) or []
        if not pts:
            sfx = "_add" if kind.endswith("add") else "_mul"
            example = ("int8" if kind.startswith("int") else "fp16") + sfx
            why = f", needed {need}" if need else ""
            raise ConfigError(f"{self.label}: no {_WHAT[kind]} entry (e.g. "
                              f"'primitives.{example}'{why})")
        return pts

    def describe(self) -> dict:
        d = {"kind": "technology", "version": 1, "name": self.name}
        if self.description:
            d["description"] = self.description
        if self.node_nm is not None:
            d["node_nm"] = self.node_nm
        prims = {}
        for k, p in self.primitives.items():
            e = {"energy_pj": p.energy_pj}
            if p.area_um2 is not None:
                e["area_um2"] = p.area_um2
            e.update(status=p.status, source=p.source)
            prims[k] = e
        d["primitives"] = prims
        return d


# ---------------------------------------------------------------------------------------
# primitive keys and sizes

def _size(kind, spec):
    """Scaling size of an op: see the module docstring."""
    if kind == "int_add":
        return float(spec[0])
    if kind == "int_mul":
        return float(spec[0] * spec[1])
    if kind == "fp_mul":
        return float(spec[0] * spec[1])
    e, p = spec
    return p * math.log2(p) + e


def parse_primitive_key(key):
    """The kind and widths of an arithmetic primitive key, as :meth:`Technology.cost_at`
    takes them, or None for any other key: ``int8_add`` -> ("int_add", (8,));
    ``int8_mul`` -> ("int_mul", (8, 8)); ``fp16_add`` -> ("fp_add", (5, 11));
    ``fp16_mul`` -> ("fp_mul", (11, 11))."""
    m = _ARITH_KEY.match(key)
    if not m:
        return None
    op = m.group(5)
    if m.group(2) is not None:
        bits = int(m.group(2))
        return (f"int_{op}", (bits,) if op == "add" else (bits, bits))
    if m.group(3) is not None:
        e, man = int(m.group(3)), int(m.group(4))
    else:
        e, man = FLOAT_NAMES[m.group(1)]
    p = man + 1
    return (f"fp_{op}", (e, p) if op == "add" else (p, p))


# ---------------------------------------------------------------------------------------
# loading

def _nonneg(v):
    return math.isfinite(v) and v >= 0


def _positive(v):
    return math.isfinite(v) and v > 0


def only_keys(doc: Doc, keys):
    """Refuse keys of ``doc`` not in ``keys`` before reading any (a typo is reported as
    such, not as the missing key it was meant to be), suggesting the closest known key
    (``unknown key (did you mean 'chunk_size'?)``)."""
    known = sorted(str(k) for k in keys)
    for k in doc.data:
        if k not in keys:
            close = difflib.get_close_matches(str(k), known, 1, 0.6)
            hint = f"did you mean '{close[0]}'?" if close else \
                f"expected one of: {', '.join(known)}"
            raise doc.error(k, f"unknown key ({hint})")


def _primitive_at(prims_doc: Doc, key):
    """One entry of ``primitives``: (Primitive, (kind, widths) or None)."""
    if not isinstance(key, str):
        raise prims_doc.error(key, "expected a primitive name")
    parsed = parse_primitive_key(key)
    is_mem = bool(_MEMORY_KEY.match(key))
    if parsed is None and not is_mem and key != "register_bit":
        raise prims_doc.error(
            key, "unknown primitive (expected intN_add, intN_mul, fp16/fp32/fp64/bf16/"
                 "tf32/eXmY _add or _mul, register_bit, sram_* or dram_*)")
    sub = prims_doc.sub(key)
    only_keys(sub, ("energy_pj", "area_um2", "status", "source"))
    need_pos = parsed is not None
    chk = _positive if need_pos else _nonneg
    what = "a positive number" if need_pos else "a non-negative number"
    energy = float(sub.get("energy_pj", (int, float), check=chk, expected=what))
    area = sub.get("area_um2", (int, float), default=None if is_mem else ..., check=chk,
                   expected=what)
    status = sub.get("status", str, check=lambda s: s in STATUSES,
                     expected="'published' or 'derived'")
    source = sub.get("source", str, check=lambda s: bool(s.strip()),
                     expected="a non-empty string")
    sub.finish()
    return Primitive(key, energy, None if area is None else float(area), status,
                     source), parsed


def _sorted_anchors(tech, lst):
    """The anchors of one kind sorted by size, one per size; refuses two different costs
    at one size and a cost that decreases with size."""
    lst.sort()
    for (s0, e0, a0, k0), (s1, e1, a1, k1) in zip(lst, lst[1:]):
        if s1 == s0 and (e1, a1) != (e0, a0):
            raise ConfigError(f"{tech.label}: key 'primitives.{k1}': same size as "
                              f"'{k0}' for the scaling rule but a different cost")
        if e1 < e0 or a1 < a0:
            raise ConfigError(f"{tech.label}: key 'primitives.{k1}': cost is smaller "
                              f"than that of the narrower '{k0}' (costs must not "
                              "decrease with width)")
    dedup = []
    for a in lst:
        if not dedup or dedup[-1][0] != a[0]:
            dedup.append(a)
    return dedup


def technology_from_doc(doc: Doc, default_name=None, path=None) -> Technology:
    """Build and validate a technology table from a parsed document."""
    header(doc, "technology")
    only_keys(doc, ("kind", "version", "name", "description", "node_nm", "primitives"))
    name = doc.get("name", str, default=default_name or "custom")
    description = doc.get("description", str, default=None)
    node = doc.get("node_nm", (int, float), default=None, check=_positive,
                   expected="a positive number")
    prims_doc = doc.sub("primitives")
    doc.finish()
    prims = {}
    anchors = {k: [] for k in OPS}
    for key in prims_doc.data:
        prim, parsed = _primitive_at(prims_doc, key)
        prims[key] = prim
        if parsed is not None:
            kind, spec = parsed
            anchors[kind].append((_size(kind, spec), prim.energy_pj, prim.area_um2, key))
    tech = Technology(name=name, primitives=prims, description=description,
                      node_nm=node, path=path)
    for kind, lst in anchors.items():
        tech._anchors[kind] = _sorted_anchors(tech, lst)
    return tech


def list_technologies():
    """Names of the built-in technology tables, sorted."""
    return sorted(builtin_files("technology"))


def load_technology(name_or_path) -> Technology:
    """A technology table from a built-in name (``list_technologies()``) or a YAML path."""
    if isinstance(name_or_path, Technology):
        return name_or_path
    src = yaml_source(name_or_path, "technology", "technology")
    if src is None:
        raise ValueError(f"technology: unknown technology {str(name_or_path)!r} (expected "
                         f"one of {', '.join(list_technologies())}, or a YAML path)")
    return technology_from_doc(Doc(read_yaml(src), str(src)), default_name=src.stem,
                               path=str(src))


# ---------------------------------------------------------------------------------------
# scaling rules

def _interp(points, x, linear):
    """Piecewise rule through ``points`` [(size, value)], sorted by size; see module doc."""
    if len(points) == 1:
        s0, v0 = points[0]
        return v0 * x / s0
    if linear:
        if x <= points[0][0]:
            return points[0][1] * x / points[0][0]
        if x >= points[-1][0]:
            return points[-1][1] * x / points[-1][0]
        for (s0, v0), (s1, v1) in zip(points, points[1:]):
            if s0 <= x <= s1:
                if x == s1:
                    return v1
                return v0 + (v1 - v0) * (x - s0) / (s1 - s0)
    # power law: log-log linear; outside, the nearest segment's exponent
    if x <= points[0][0]:
        seg = points[0], points[1]
    elif x >= points[-1][0]:
        seg = points[-2], points[-1]
    else:
        for seg in zip(points, points[1:]):
            if seg[0][0] <= x <= seg[1][0]:
                break
    (s0, v0), (s1, v1) = seg
    if x == s0:
        return v0
    if x == s1:
        return v1
    alpha = math.log(v1 / v0) / math.log(s1 / s0)
    return v0 * (x / s0) ** alpha
