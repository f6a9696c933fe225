"""Sweep specs: a YAML grid of simulations, validated and expanded into points.

The spec
--------
One YAML document (``kind: sweep``, ``version: 1``)::

    kind: sweep
    version: 1
    description: fp16 narrow accumulators on the digits MLP   # optional
    grid:
      traces: [digits-mlp-relu]           # bundled names or trace folders
      accelerators: [fp16-fp32acc]        # built-in names or accelerator YAML paths
      narrow: [fp16, bf16, e5m7]          # optional: replace the narrow accumulator format
      wide: [fp32]                        # optional: replace the wide accumulator format
      policies:                           # accsim.precision.scheduler.POLICIES
        - uniform-narrow
        - uniform-wide
        - condition                       # one point per tau and per fraction below
        - {name: random, taus: [], fractions: [0.1, 0.3]}   # its own budgets
      taus: [0.03, 0.1, 0.3, 1.0]         # condition thresholds (optional)
      fractions: [0.05]                   # re-issue budgets in [0, 1] (optional)
      estimators: [exact]                 # optional (default exact): kappa_i estimators
      seeds: [0]                          # optional (default 0): stochastic-rounding seeds
    limit: 300                            # optional: simulate only the first N samples
    technology: horowitz-45nm             # optional: technology table pricing the runs
    options: {}                           # optional: more keyword arguments of simulate()

Relative paths (traces, accelerators, formats, technology) are relative to the spec file's
folder. Every list of the grid must be non-empty. A policy entry is a name or a mapping
with ``name`` and optionally its own ``taus`` / ``fractions`` (replacing the grid's for
that policy; ``[]``: none of that kind) and ``options`` (keyword arguments of
:func:`accsim.network.simulate` for that policy only, e.g. ``ladder`` of ``multi-level``;
passed as written, checked when the point runs). ``options`` at the top level apply to
every point; both must name keywords of ``simulate``.

Expansion: traces × accelerators × narrow × wide × policies × budgets × estimators × seeds.
Policies that need no budget (``uniform-narrow``, ``uniform-wide``, ``overflow``) give one
point each: they are not multiplied by τ or fractions. The other policies give one point per
τ and one per fraction that :func:`accsim.precision.scheduler.check_policy` accepts
(``condition``: threshold τ or top-fraction; ``random`` / ``oracle``: the budget of
``condition`` at τ, or the fraction). The estimator multiplies only the points whose
selection uses it (``condition``, and ``random`` / ``oracle`` at a τ). Everything is
validated before any simulation starts: an error is one ``ValueError`` line naming the
spec file and key path.

Points
------
Each point has canonical parameters (:attr:`Point.params`, a JSON-able dict) and a stable
id: the first 16 hex digits of the SHA-256 of the canonical JSON of the parameters.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..hardware.accelerator import load_accelerator
from ..hardware.cost import load_technology
from ..hardware.technology import DEFAULT_TECHNOLOGY
from ..network.simulation import resolve_accelerator, resolve_trace, simulate
from ..numerics.config import ConfigError, Doc, header, load_format, read_yaml
from ..precision.scheduler import (ESTIMATORS, NO_BUDGET, POLICIES, check_policy,
                                   valid_tau)

#: simulate() keywords the grid sets itself (not allowed under ``options``)
_RESERVED = ("trace", "accelerator", "narrow", "wide", "limit", "seed", "progress",
             "policy", "tau", "fraction", "estimator")


# ---------------------------------------------------------------------------------------
# points
# ---------------------------------------------------------------------------------------
def canonical_json(obj) -> str:
    """Canonical JSON: sorted keys, no spaces, floats by ``repr`` (exact round trip)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def point_id(params: dict) -> str:
    """Stable id of a point: 16 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One simulation of a sweep.

    ``params``: canonical parameters, as written in the spec (names / paths as given):
    trace, accelerator, narrow, wide, policy, tau, fraction, estimator, seed, limit,
    technology, options. ``run``: the same with paths made absolute (what the worker
    receives). ``id``: :func:`point_id` of ``params``.
    """

    id: str
    params: dict
    run: dict

    def label(self) -> str:
        """One line naming the point: trace, accelerator, the parameters that are set."""
        p = self.params
        parts = [p["trace"], p["accelerator"]]
        if p["narrow"] is not None:
            parts.append(f"narrow={p['narrow']}")
        if p["wide"] is not None:
            parts.append(f"wide={p['wide']}")
        parts.append(p["policy"])
        if p["tau"] is not None:
            parts.append(f"tau={p['tau']:g}")
        if p["fraction"] is not None:
            parts.append(f"fraction={p['fraction']:g}")
        if p["estimator"] is not None and p["estimator"] != "exact":
            parts.append(f"estimator={p['estimator']}")
        parts.append(f"seed={p['seed']}")
        parts += [f"{k}={canonical_json(v)}" for k, v in sorted(p["options"].items())]
        return " ".join(parts)


@dataclass
class Spec:
    """A loaded, validated sweep spec: its file, raw text and expanded points."""

    path: Path
    text: str
    points: list


@dataclass
class _Grid:
    """The lists under ``grid`` (``policies`` as written; ``None``: no format override)."""

    traces: list
    accelerators: list
    narrow: list
    wide: list
    taus: list
    fractions: list
    estimators: list
    seeds: list
    policies: list


@dataclass
class _Paths:
    """What the worker is given for each name of the spec: absolute paths where the spec
    gave relative ones (names unchanged)."""

    technology: str
    traces: dict
    accelerators: dict
    formats: dict


# ---------------------------------------------------------------------------------------
# reading the YAML
# ---------------------------------------------------------------------------------------
def _ref(value, base: Path):
    """A name stays a name; a relative path (has '/', ends .yaml, or exists next to the
    spec) is made absolute relative to the spec's folder ``base``."""
    s = str(value)
    p = Path(s)
    if p.is_absolute():
        return s
    if "/" in s or s.endswith((".yaml", ".yml")) or (base / p).exists():
        return str((base / p).resolve())
    return s


def _finish(doc: Doc):
    """Refuse keys nobody read, suggesting the closest known key."""
    known = sorted(str(u) for u in doc.used)
    for k in doc.data:
        if k in doc.used:
            continue
        close = difflib.get_close_matches(str(k), known, 1, 0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(known)}"
        raise doc.error(k, f"unknown key ({hint})")


def _list(doc: Doc, key, item_types, *, default=..., check=None, expected=None,
          empty=False):
    """A non-empty list (or any list when ``empty``) under ``key`` whose items pass
    ``item_types`` / ``check``; ``default`` when absent (required when not given)."""
    if not doc.has(key) and default is not ...:
        doc.used.add(key)
        return default
    each = f" (each {expected})" if expected else ""
    v = doc.get(key, list, expected=f"a non-empty list{each}")
    if not v and not empty:
        what = f": {expected}" if expected else ""
        raise doc.error(key, f"empty list (expected at least one entry{what})")
    for i, item in enumerate(v):
        ok = isinstance(item, item_types) and not (isinstance(item, bool)
                                                   and bool not in _tuple(item_types))
        if ok and check is not None:
            ok = check(item)
        if not ok:
            raise doc.error(f"{key}[{i}]", f"expected {expected or 'a value'}, got {item!r}")
    return v


def _tuple(t):
    return t if isinstance(t, tuple) else (t,)


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


#: τ of a spec: :func:`accsim.precision.scheduler.valid_tau`, and finite (results and point
#: ids are JSON, which has no infinity)
_TAU_EXPECTED = "a finite number >= 0"


def _tau(x):
    return valid_tau(x) and math.isfinite(x)


def _fraction(x):
    return _finite(x) and 0 <= x <= 1


def _simulate_keywords():
    return [n for n, p in inspect.signature(simulate).parameters.items()
            if p.kind == p.KEYWORD_ONLY and n not in _RESERVED and not n.startswith("_")]


def _options(doc: Doc, key):
    """An ``options`` mapping of extra simulate() keywords (JSON-able values)."""
    if not doc.has(key):
        doc.used.add(key)
        return {}
    sub = doc.sub(key)
    allowed = _simulate_keywords()
    out = {}
    for k in list(sub.data):
        if k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, 1, 0.6)
            hint = f"did you mean '{close[0]}'?" if close else \
                f"expected one of: {', '.join(allowed)}"
            if str(k) in _RESERVED:
                hint = "set by the grid, not by options"
            raise sub.error(k, f"not a keyword of accsim.network.simulate ({hint})")
        v = sub.data[k]
        try:
            canonical_json(v)
        except (TypeError, ValueError):
            raise sub.error(k, f"expected a JSON-able value, got {v!r}") from None
        out[str(k)] = v
    return out


def _read_grid(grid: Doc) -> _Grid:
    """The lists under ``grid``, each checked; unknown keys refused."""
    g = _Grid(
        traces=_list(grid, "traces", str, expected="a trace name or folder"),
        accelerators=_list(grid, "accelerators", str,
                           expected="an accelerator name or YAML path"),
        narrow=_list(grid, "narrow", str, default=[None], expected="a format name or path"),
        wide=_list(grid, "wide", str, default=[None], expected="a format name or path"),
        taus=_list(grid, "taus", (int, float), default=[], check=_tau,
                   expected=_TAU_EXPECTED),
        fractions=_list(grid, "fractions", (int, float), default=[], check=_fraction,
                        expected="a number in [0, 1]"),
        estimators=_list(grid, "estimators", str, default=["exact"],
                         check=lambda e: e in ESTIMATORS,
                         expected=f"one of {', '.join(ESTIMATORS)}"),
        seeds=_list(grid, "seeds", int, default=[0], check=lambda s: s >= 0,
                    expected="a non-negative integer"),
        policies=_list(grid, "policies", (str, dict), expected="a policy name or mapping"))
    _finish(grid)
    return g


def _budgets(grid: Doc, key, name, taus, fracs):
    """The ``(tau, fraction)`` budgets of policy ``name``: ``(None, None)`` alone for a
    policy without budget, else each τ and fraction that the policy accepts."""
    if name in NO_BUDGET:
        return [(None, None)]
    budgets = []
    for t, f in [(float(t), None) for t in taus] + [(None, float(f)) for f in fracs]:
        try:
            check_policy(name, t, f, "exact")
        except ValueError:
            continue
        budgets.append((t, f))
    if budgets:
        return budgets
    try:
        check_policy(name, None, None, "exact")
    except ValueError:
        raise grid.error(key, f"policy {name!r} needs a budget that it "
                              f"accepts: give taus or fractions") from None
    return [(None, None)]


def _policy(grid: Doc, i, entry, g: _Grid):
    """``(name, budgets, options)`` of the policy entry ``policies[i]`` (a name or a
    mapping with its own taus / fractions / options)."""
    key = f"policies[{i}]"
    if isinstance(entry, str):
        name, taus, fracs, opts = entry, g.taus, g.fractions, {}
    else:
        pd = Doc(entry, grid.source, f"{grid.path}.{key}")
        name = pd.get("name", str, expected="a policy name")
        # the policy's own budgets replace the grid's; [] means none of that kind
        taus = _list(pd, "taus", (int, float), default=g.taus, check=_tau,
                     expected=_TAU_EXPECTED, empty=True)
        fracs = _list(pd, "fractions", (int, float), default=g.fractions, check=_fraction,
                      expected="a number in [0, 1]", empty=True)
        opts = _options(pd, "options")
        _finish(pd)
    if name not in POLICIES:
        close = difflib.get_close_matches(name, POLICIES, 1, 0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise grid.error(key, f"unknown policy {name!r}{hint}; expected one of "
                              f"{', '.join(POLICIES)}")
    return name, _budgets(grid, key, name, taus, fracs), opts


# ---------------------------------------------------------------------------------------
# checking what the spec names, and expanding the grid
# ---------------------------------------------------------------------------------------
def _checked(d: Doc, key, fn, *args):
    """``fn(*args)``; its ``ValueError`` becomes one line naming the spec key ``key``."""
    try:
        return fn(*args)
    except ConfigError as exc:
        raise ConfigError(f"{d.where(key)}: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:
        raise d.error(key, str(exc).splitlines()[0]) from None


def _resolve(doc: Doc, grid: Doc, g: _Grid, tech: str, base: Path) -> _Paths:
    """Load every technology, trace, accelerator and format the spec names (and each
    accelerator with each narrow / wide override) before any point runs."""
    paths = _Paths(_ref(tech, base), {}, {}, {})
    _checked(doc, "technology", load_technology, paths.technology)
    for i, t in enumerate(g.traces):
        paths.traces[t] = _ref(t, base)
        _checked(grid, f"traces[{i}]", resolve_trace, paths.traces[t])
    for i, a in enumerate(g.accelerators):
        paths.accelerators[a] = _ref(a, base)
        _checked(grid, f"accelerators[{i}]", load_accelerator, paths.accelerators[a])
    for key, lst in (("narrow", g.narrow), ("wide", g.wide)):
        for i, f in enumerate(lst):
            if f is None:
                continue
            r = _ref(f, base)
            _checked(grid, f"{key}[{i}]", load_format, r)
            paths.formats[f] = r
    for i, a in enumerate(g.accelerators):
        for n in g.narrow:
            for w in g.wide:
                _checked(grid, f"accelerators[{i}]", resolve_accelerator,
                         paths.accelerators[a], paths.formats.get(n), paths.formats.get(w))
    return paths


def _expand(g: _Grid, policies, common: dict, paths: _Paths) -> list:
    """The points of the grid (module doc), each once; ``common``: limit, technology and
    the top-level options."""
    points, seen = [], set()
    for t, a, n, w, (pname, budgets, popts) in itertools.product(
            g.traces, g.accelerators, g.narrow, g.wide, policies):
        for tau, frac in budgets:
            uses_est = pname not in NO_BUDGET and not (pname in ("random", "oracle")
                                                       and tau is None)
            for e, seed in itertools.product(g.estimators if uses_est else [None], g.seeds):
                params = {"trace": t, "accelerator": a, "narrow": n, "wide": w,
                          "policy": pname, "tau": tau, "fraction": frac, "estimator": e,
                          "seed": seed, "limit": common["limit"],
                          "technology": common["technology"],
                          "options": {**common["options"], **popts}}
                pid = point_id(params)
                if pid in seen:     # the same point listed twice
                    continue
                seen.add(pid)
                run = dict(params, trace=paths.traces[t], accelerator=paths.accelerators[a],
                           narrow=paths.formats.get(n), wide=paths.formats.get(w),
                           technology=paths.technology)
                points.append(Point(pid, params, run))
    return points


def load_spec(path) -> Spec:
    """Read, validate and expand a sweep spec (see the module doc). Every error is a
    one-line ``ValueError`` naming the file and key path; nothing runs before it passes."""
    path = Path(path)
    raw = read_yaml(path)
    text = path.read_text(encoding="utf-8")
    doc = Doc(raw, str(path))
    header(doc, "sweep")
    doc.get("grid", dict, expected="a mapping")
    grid = doc.sub("grid")
    g = _read_grid(grid)
    common = {
        "limit": doc.get("limit", int, default=None, check=lambda n: n >= 1,
                         expected="a positive integer"),
        "technology": doc.get("technology", str, default=DEFAULT_TECHNOLOGY,
                              expected="a technology name or YAML path"),
        "options": _options(doc, "options"),
    }
    _finish(doc)
    policies = [_policy(grid, i, entry, g) for i, entry in enumerate(g.policies)]
    paths = _resolve(doc, grid, g, common["technology"], path.resolve().parent)
    return Spec(path, text, _expand(g, policies, common, paths))
