"""Parameter sweeps: a YAML grid of simulations, run in-process, on a local process pool or
on a Dask cluster, with resumable results.

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
      policies:                           # scheduler policies (accsim.scheduler.POLICIES)
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
τ and one per fraction that :func:`accsim.scheduler.check_policy` accepts (``condition``:
threshold τ or top-fraction; ``random`` / ``oracle``: the budget of ``condition`` at τ, or
the fraction). The estimator multiplies only the points whose selection uses it
(``condition``, and ``random`` / ``oracle`` at a τ). Everything is validated before any
simulation starts: an error is one ``ValueError`` line naming the spec file and key path.

Points and results
------------------
Each point has canonical parameters (:attr:`Point.params`, a JSON-able dict) and a stable
id: the first 16 hex digits of the SHA-256 of the canonical JSON of the parameters. A
sweep writes into its output folder:

``results.jsonl``
    one JSON line per finished point (the file is locked while a sweep writes to it: a
    second sweep into the same folder is refused), ``{"id", "params", "accsim_version", "metrics",
    "seconds"}``, appended, flushed and fsynced by the parent process as each point
    finishes. ``metrics`` (:func:`point_metrics`) depend only on the parameters, never on
    the executor; ``seconds`` is the point's wall-clock time in the worker.
``spec.yaml``
    a copy of the last spec run into the folder (written atomically).

Resume: rerunning a sweep over the same folder skips the ids already in
``results.jsonl``; a torn last line (a sweep killed mid-write) is cut off first, so a
sweep killed at any moment loses at most the points in flight and duplicates nothing.
Results of points that are not in the current grid (an earlier, different spec) are kept
in the file and not rerun; ``accsim report`` covers every point in the file.

Executors
---------
``inprocess`` (default): one point after the other in this process.
``processes``: a local pool of ``workers`` processes (spawn, never fork: numba's threading
layer breaks forked children), each with ``NUMBA_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``
and ``OMP_NUM_THREADS`` set to 1 before numpy or numba load.
``dask-local``: a ``dask.distributed.LocalCluster`` of ``workers`` single-threaded worker
processes (same environment). ``tcp://host:port`` (or ``tls://``, ``ucx://``...): the
Dask scheduler of a running cluster; its workers need accsim installed and the traces
and YAML files at the same paths. Dask is an optional extra: ``pip install accsim[dask]``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import inspect
import itertools
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..numerics.config import ConfigError, Doc, header, read_yaml

RESULTS = "results.jsonl"
SPEC_COPY = "spec.yaml"

#: policies that take no budget: one point each, not multiplied by τ / fractions
NO_BUDGET = ("uniform-narrow", "uniform-wide", "overflow")

#: environment of sweep worker processes (one thread each: the pool is the parallelism)
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}

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


# ---------------------------------------------------------------------------------------
# spec loading
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


def _simulate_keywords():
    from ..network.simulation import simulate
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


def load_spec(path) -> Spec:
    """Read, validate and expand a sweep spec (see the module doc). Every error is a
    one-line ``ValueError`` naming the file and key path; nothing runs before it passes."""
    from ..hardware.accelerator import load_accelerator
    from ..numerics.config import load_format
    from ..hardware.cost import load_technology
    from ..network.simulation import resolve_accelerator, resolve_trace
    from ..precision.scheduler import ESTIMATORS, POLICIES, check_policy

    path = Path(path)
    raw = read_yaml(path)
    text = path.read_text(encoding="utf-8")
    src = str(path)
    base = path.resolve().parent
    doc = Doc(raw, src)
    header(doc, "sweep")
    doc.get("grid", dict, expected="a mapping")
    grid = doc.sub("grid")

    def wrap(d: Doc, key, fn, *args):
        try:
            return fn(*args)
        except ConfigError as exc:
            raise ConfigError(f"{d.where(key)}: {str(exc).splitlines()[0]}") from None
        except ValueError as exc:
            msg = str(exc).splitlines()[0]
            raise d.error(key, msg) from None

    names = "a trace name or folder"
    traces = _list(grid, "traces", str, expected=names)
    accs = _list(grid, "accelerators", str, expected="an accelerator name or YAML path")
    narrows = _list(grid, "narrow", str, default=[None], expected="a format name or path")
    wides = _list(grid, "wide", str, default=[None], expected="a format name or path")
    taus = _list(grid, "taus", (int, float), default=[], check=_finite,
                 expected="a finite number")
    fracs = _list(grid, "fractions", (int, float), default=[],
                  check=lambda f: _finite(f) and 0 <= f <= 1, expected="a number in [0, 1]")
    ests = _list(grid, "estimators", str, default=["exact"], check=lambda e: e in ESTIMATORS,
                 expected=f"one of {', '.join(ESTIMATORS)}")
    seeds = _list(grid, "seeds", int, default=[0], check=lambda s: s >= 0,
                  expected="a non-negative integer")
    pol_raw = _list(grid, "policies", (str, dict), expected="a policy name or mapping")
    _finish(grid)
    limit = doc.get("limit", int, default=None, check=lambda n: n >= 1,
                    expected="a positive integer")
    tech = doc.get("technology", str, default="horowitz-45nm",
                   expected="a technology name or YAML path")
    options = _options(doc, "options")
    _finish(doc)

    policies = []   # (name, [(tau, fraction)], options)
    for i, entry in enumerate(pol_raw):
        key = f"policies[{i}]"
        if isinstance(entry, str):
            name, ptaus, pfracs, popts = entry, taus, fracs, {}
            pd = None
        else:
            pd = Doc(entry, src, f"{grid.path}.{key}")
            name = pd.get("name", str, expected="a policy name")
            # the policy's own budgets replace the grid's; [] means none of that kind
            ptaus = _list(pd, "taus", (int, float), default=taus, check=_finite,
                          expected="a finite number", empty=True)
            pfracs = _list(pd, "fractions", (int, float), default=fracs,
                           check=lambda f: _finite(f) and 0 <= f <= 1,
                           expected="a number in [0, 1]", empty=True)
            popts = _options(pd, "options")
            _finish(pd)
        if name not in POLICIES:
            close = difflib.get_close_matches(name, POLICIES, 1, 0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise grid.error(key, f"unknown policy {name!r}{hint}; expected one of "
                                  f"{', '.join(POLICIES)}")
        budgets = []
        if name in NO_BUDGET:
            budgets = [(None, None)]
        else:
            cands = [(float(t), None) for t in ptaus] + [(None, float(f)) for f in pfracs]
            for t, f in cands:
                try:
                    check_policy(name, t, f, "exact")
                except ValueError:
                    continue
                budgets.append((t, f))
            if not budgets:
                try:
                    check_policy(name, None, None, "exact")
                    budgets = [(None, None)]
                except ValueError:
                    raise grid.error(key, f"policy {name!r} needs a budget that it "
                                          f"accepts: give taus or fractions") from None
        policies.append((name, budgets, popts))

    # validate every referenced object before any work starts
    run_tech = _ref(tech, base)
    wrap(doc, "technology", load_technology, run_tech)
    run_traces = {}
    for i, t in enumerate(traces):
        r = _ref(t, base)
        wrap(grid, f"traces[{i}]", resolve_trace, r)
        run_traces[t] = r
    run_accs = {}
    for i, a in enumerate(accs):
        r = _ref(a, base)
        wrap(grid, f"accelerators[{i}]", load_accelerator, r)
        run_accs[a] = r
    run_fmt = {}
    for key, lst in (("narrow", narrows), ("wide", wides)):
        for i, f in enumerate(lst):
            if f is None:
                continue
            r = _ref(f, base)
            wrap(grid, f"{key}[{i}]", load_format, r)
            run_fmt[f] = r
    for i, a in enumerate(accs):
        for n in narrows:
            for w in wides:
                wrap(grid, f"accelerators[{i}]", resolve_accelerator, run_accs[a],
                     run_fmt.get(n), run_fmt.get(w))

    points, seen = [], set()
    for t, a, n, w, (pname, budgets, popts) in itertools.product(traces, accs, narrows,
                                                                 wides, policies):
        for tau, frac in budgets:
            uses_est = pname not in NO_BUDGET and not (pname in ("random", "oracle")
                                                       and tau is None)
            for e, seed in itertools.product(ests if uses_est else [None], seeds):
                params = {"trace": t, "accelerator": a, "narrow": n, "wide": w,
                          "policy": pname, "tau": tau, "fraction": frac, "estimator": e,
                          "seed": seed, "limit": limit, "technology": tech,
                          "options": {**options, **popts}}
                pid = point_id(params)
                if pid in seen:     # the same point listed twice
                    continue
                seen.add(pid)
                run = dict(params, trace=run_traces[t], accelerator=run_accs[a],
                           narrow=run_fmt.get(n), wide=run_fmt.get(w), technology=run_tech)
                points.append(Point(pid, params, run))
    return Spec(path, text, points)


# ---------------------------------------------------------------------------------------
# one point
# ---------------------------------------------------------------------------------------
_TRACE_CACHE: dict = {}


def _json_num(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def point_metrics(result, priced: dict) -> dict:
    """The metrics of a finished point (``results.jsonl`` ``metrics``).

    accuracy, reference_accuracy (float64 reference), agreement (share of samples whose
    argmax equals the reference's): fractions in [0, 1] (accuracy ``None`` without labels);
    recomputed_fraction: re-issued output components over all; bound_violations: count;
    energy_pj, baseline_energy_pj (every MAC on the wide accumulator): pJ for all
    ``n_samples``; energy_per_sample_pj, baseline_energy_per_sample_pj: pJ per inference;
    energy_savings: 1 − energy / baseline; area_um2: µm²; cycles: count; narrow / wide:
    accumulator format labels; events: overflow / saturation / inexact counts; layers:
    per matmul layer name, recomputed_fraction, bound_violations, energy_pj, events;
    levels (ladder policies): ``[{format, count, fraction}]`` of the components per
    accumulator rung, over the network and per layer.
    """
    n = result.n_samples
    per_layer_energy = {lr["name"]: lr["energy_pj"] for lr in priced["layers"]}
    m = {
        "accuracy": _json_num(result.accuracy),
        "reference_accuracy": _json_num(result.reference_accuracy),
        "agreement": _json_num(result.agreement),
        "recomputed_fraction": _json_num(result.recomputed_fraction),
        "bound_violations": int(result.bound_violations),
        "energy_pj": _json_num(priced["energy_pj"]),
        "baseline_energy_pj": _json_num(priced["baseline_energy_pj"]),
        "energy_per_sample_pj": _json_num(priced["energy_pj"] / n) if n else None,
        "baseline_energy_per_sample_pj":
            _json_num(priced["baseline_energy_pj"] / n) if n else None,
        "energy_savings": _json_num(priced["energy_savings"]),
        "area_um2": _json_num(priced["area_um2"]),
        "cycles": _json_num(priced["cycles"]),
        "n_samples": int(n),
        "narrow": result.narrow,
        "wide": result.wide,
        "events": {k: int(v) for k, v in result.events.items()},
        "layers": [{"name": lr.name,
                    "recomputed_fraction": _json_num(lr.recomputed_fraction),
                    "bound_violations": int(lr.bound_violations),
                    "energy_pj": _json_num(per_layer_energy.get(lr.name)),
                    "events": {k: int(v) for k, v in lr.events.items()}}
                   for lr in result.layers],
    }
    levels = getattr(result, "levels", None)
    if levels:
        m["levels"] = _levels(levels)
        for d, lr in zip(m["layers"], result.layers):
            d["levels"] = _levels(getattr(lr, "levels", []))
    return m


def _levels(levels):
    return [{"format": str(v["format"]), "count": int(v["count"]),
             "fraction": _json_num(v["fraction"])} for v in levels]


def run_point(run: dict) -> tuple:
    """Simulate and price one point (``Point.run``); returns ``(metrics, seconds)``.

    Runs in whichever process the executor chose; metrics depend only on ``run``.
    """
    t0 = time.perf_counter()
    from ..hardware.cost import price_simulation
    from ..network.simulation import resolve_accelerator, resolve_trace, simulate
    key = run["trace"]
    trace = _TRACE_CACHE.get(key)
    if trace is None:
        if len(_TRACE_CACHE) > 4:
            _TRACE_CACHE.clear()
        trace = _TRACE_CACHE[key] = resolve_trace(key)
    acc = resolve_accelerator(run["accelerator"], run["narrow"], run["wide"])
    est = run["estimator"] or "exact"
    result = simulate(trace, acc, limit=run["limit"], seed=run["seed"], policy=run["policy"],
                      tau=run["tau"], fraction=run["fraction"], estimator=est,
                      **run["options"])
    priced = price_simulation(acc, run["technology"], result)
    return point_metrics(result, priced), time.perf_counter() - t0


def _worker_run_point(run: dict) -> tuple:
    """:func:`run_point` in a pool / Dask worker: one numba thread, whatever the
    environment said (a remote cluster's workers may not have ``WORKER_ENV`` set)."""
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import numba
        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover - numba is a core dependency
        pass
    return run_point(run)


# ---------------------------------------------------------------------------------------
# results.jsonl
# ---------------------------------------------------------------------------------------
def read_results(path, *, repair=False) -> list:
    """The records of a ``results.jsonl``: a list of dicts.

    A torn last line (no newline at the end, or not valid JSON: a writer killed
    mid-line) is ignored, and cut off the file when ``repair`` is true. Any other bad line
    is a ``ValueError`` naming the file and line.
    """
    path = Path(path)
    data = path.read_bytes()
    records, good_end, pos, lineno = [], 0, 0, 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        lineno += 1
        last = end >= len(data)
        try:
            rec = json.loads(line.decode("utf-8")) if line.strip() else None
            if rec is not None and (not isinstance(rec, dict) or "id" not in rec
                                    or "params" not in rec or "metrics" not in rec):
                raise ValueError("not a result record")
        except (ValueError, UnicodeDecodeError):
            if last:
                break   # torn last line
            raise ValueError(f"{path}: line {lineno} is not a result record (corrupt "
                             f"file; remove that line to resume)") from None
        if nl < 0:      # complete JSON but no newline: a torn write too
            break
        if rec is not None:
            records.append(rec)
        good_end = end
        pos = end
    if repair and good_end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def write_atomic(path, write):
    """Create ``path`` whole or not at all: ``write(tmp)`` fills a temporary file in the
    same folder, which is fsynced and renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path, text: str):
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


class _Writer:
    """Appends one record per line to results.jsonl, flushed and fsynced each time; holds
    an exclusive lock on the file (released by the system if the process dies)."""

    def __init__(self, path: Path):
        self.fh = open(path, "ab")  # noqa: SIM115 - held open across the sweep
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise ValueError(f"--out: {path} is in use by another running sweep") from None

    def write(self, rec: dict):
        line = canonical_json(rec).encode("utf-8") + b"\n"
        self.fh.write(line)
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self):
        self.fh.close()


# ---------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------
class PointError(RuntimeError):
    """A point failed while running (after validation): names the point."""

    @classmethod
    def of(cls, point, exc):
        return cls(f"point {point.id} ({point.label()}) failed: "
                   f"{exc.__class__.__name__}: {_first_line(exc)}")


def _iter_inprocess(todo, workers):
    for p in todo:
        try:
            yield p, run_point(p.run)
        except Exception as exc:
            raise PointError.of(p, exc) from exc


def _first_line(exc):
    s = str(exc)
    return s.splitlines()[0] if s else ""


@contextlib.contextmanager
def _environment(updates=None):
    """Apply ``updates`` to ``os.environ``; on exit put back every variable as it was
    (also those a library such as dask's Nanny set meanwhile)."""
    saved = dict(os.environ)
    try:
        if updates:
            os.environ.update(updates)
        yield
    finally:
        for k in [k for k in os.environ if k not in saved]:
            del os.environ[k]
        for k, v in saved.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


def _iter_processes(todo, workers, fn=None):
    import concurrent.futures as cf
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    n = max(1, min(workers, len(todo)))
    ex = cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    # spawned children inherit os.environ at start; with the spawn context the pool
    # starts its processes while tasks are submitted, so set the worker environment
    # around the submissions only (the parent runs no numba code meanwhile)
    futs = {}
    try:
        with _environment(WORKER_ENV):
            for p in todo:
                futs[ex.submit(fn or _worker_run_point, p.run)] = p
        yield from _collect(cf.as_completed(futs), futs)
    finally:
        for f in futs:
            f.cancel()
        ex.shutdown(wait=True, cancel_futures=True)


def _collect(finished, futs):
    """(point, result) for each future as ``finished`` yields it; a failure names its
    point."""
    for f in finished:
        p = futs[f]
        try:
            out = f.result()
        except Exception as exc:
            raise PointError.of(p, exc) from exc
        yield p, out


def _dask():
    try:
        import distributed
    except ImportError:
        raise ValueError("--scheduler: Dask schedulers need dask.distributed: "
                         "pip install 'accsim[dask]'") from None
    return distributed


def _iter_dask(todo, workers, address=None, connect_timeout=10.0, fn=None):
    distributed = _dask()
    import logging
    if address is None:
        # dask's Nanny writes its pre-spawn variables into this process's environment
        with _environment():
            cluster = distributed.LocalCluster(
                n_workers=max(1, min(workers, len(todo))), threads_per_worker=1,
                processes=True, dashboard_address=None, silence_logs=logging.ERROR,
                env=dict(WORKER_ENV))
            try:
                with distributed.Client(cluster) as client:
                    yield from _dask_run(distributed, client, todo, fn)
            finally:
                cluster.close()
        return
    try:
        client = distributed.Client(address, timeout=f"{connect_timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(f"--scheduler: cannot reach the Dask scheduler at {address} "
                         f"within {connect_timeout:g} s ({exc.__class__.__name__}: "
                         f"{_first_line(exc) or 'no answer'})") from None
    # closing the client releases its futures: the scheduler drops unfinished points
    with client:
        yield from _dask_run(distributed, client, todo, fn)


def _dask_run(distributed, client, todo, fn):
    futs = {}
    for p in todo:
        f = client.submit(fn or _worker_run_point, p.run, key=f"accsim-point-{p.id}",
                          pure=False)
        futs[f] = p
    yield from _collect(distributed.as_completed(list(futs)), futs)


SCHEDULERS = ("inprocess", "processes", "dask-local")


def check_scheduler(scheduler: str):
    """Validate ``--scheduler`` (a name of :data:`SCHEDULERS` or a Dask address)."""
    if scheduler in SCHEDULERS:
        if scheduler == "dask-local":
            _dask()
        return
    if "://" in scheduler and scheduler.split("://", 1)[1]:
        _dask()
        return
    raise ValueError(f"--scheduler: expected one of {', '.join(SCHEDULERS)} or a Dask "
                     f"scheduler address such as tcp://host:8786, got {scheduler!r}")


def _preflight(address, timeout=3.0):
    """Fail fast (one line) when nothing listens at a ``tcp://`` / ``tls://`` address:
    before any folder is created, and without Dask's connection retries."""
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(address)
    if u.scheme not in ("tcp", "tls"):
        return
    try:
        host, port = u.hostname, u.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ValueError(f"--scheduler: expected a Dask scheduler address such as "
                         f"tcp://host:8786, got {address!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ValueError(f"--scheduler: cannot reach the Dask scheduler at {address} "
                         f"({reason})") from None


def _executor(scheduler):
    if scheduler == "inprocess":
        return _iter_inprocess
    if scheduler == "processes":
        return _iter_processes
    if scheduler == "dask-local":
        return _iter_dask
    return lambda todo, workers: _iter_dask(todo, workers, address=scheduler)


# ---------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------
@dataclass
class SweepSummary:
    """What :func:`run_sweep` did: points in the grid, found already done, run now."""

    total: int
    skipped: int
    ran: int
    seconds: float
    results: Path


def run_sweep(spec, out, *, scheduler="inprocess", workers=None, progress=None,
              log=None) -> SweepSummary:
    """Run every point of ``spec`` (a path or :class:`Spec`) not yet in
    ``out/results.jsonl``.

    ``scheduler``: ``inprocess``, ``processes``, ``dask-local`` or a Dask scheduler
    address; ``workers``: pool / LocalCluster size (default ``os.cpu_count()``);
    ``progress(done, total, point, seconds)``: called in this process after each point
    (``done`` counts the points of the grid finished so far, resumed ones included), and
    once with ``point`` and ``seconds`` ``None`` before the first;
    ``log(message)``: one-line messages.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    check_scheduler(scheduler)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers: expected a positive integer, got {workers!r}")
    if scheduler not in SCHEDULERS:
        _preflight(scheduler)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / RESULTS
    writer = _Writer(res_path)      # locks results.jsonl before reading or repairing it
    try:
        done_ids = {r["id"] for r in read_results(res_path, repair=True)}
        total = len(spec.points)
        todo = [p for p in spec.points if p.id not in done_ids]
        skipped = total - len(todo)
        write_text_atomic(out / SPEC_COPY, spec.text)
        from .. import __version__
        log = log or (lambda msg: None)
        pool = "" if scheduler == "inprocess" else \
            f", {min(workers, max(len(todo), 1))} workers"
        log(f"{total} points, {skipped} already in {res_path}, {len(todo)} to run "
            f"(scheduler {scheduler}{pool})")
        t0 = time.perf_counter()
        ran = 0
        if todo and progress is not None:
            progress(skipped, total, None, None)     # draw the bar before the first point
        if todo:
            for p, (metrics, seconds) in _executor(scheduler)(todo, workers):
                writer.write({"id": p.id, "params": p.params, "accsim_version": __version__,
                              "metrics": metrics, "seconds": round(seconds, 6)})
                ran += 1
                if progress is not None:
                    progress(skipped + ran, total, p, seconds)
    finally:
        writer.close()
    return SweepSummary(total, skipped, ran, time.perf_counter() - t0, res_path)
