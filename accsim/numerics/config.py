"""YAML documents -> validated frozen values; the built-in registry.

Every accsim YAML file is one document that says what it is::

    kind: number_format        # or accelerator, technology, ...
    version: 1

Errors are ``ValueError`` whose message names the file, the key path and what was
expected, on one line.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

import yaml

from .formats import FloatFormat, FixedFormat, IntFormat

_PACKAGE = Path(__file__).resolve().parent.parent   # the accsim package folder


def package_data_dir(name: str) -> Path:
    """A data folder shipped with accsim: ``accsim/_data/NAME`` inside an installed wheel
    (pyproject.toml force-includes it), or the repository's top-level ``NAME/`` for an
    editable install."""
    inside = _PACKAGE / "_data" / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name


def builtin_dir() -> Path:
    """Folder of the built-in YAML files (formats/)."""
    return package_data_dir("formats")


class ConfigError(ValueError):
    """A bad YAML document: the message names the file and key path."""


def read_yaml(path) -> dict:
    """Parse one YAML file into a mapping, with a one-line error naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: invalid YAML ({problem})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a YAML mapping with 'kind' and 'version'")
    return doc


class Doc:
    """A mapping with its origin, for error messages naming file and key path."""

    def __init__(self, data: dict, source: str, path: str = ""):
        self.data = data
        self.source = source
        self.path = path
        self.used = set()

    def where(self, key=None):
        p = self.path
        if key is not None:
            p = f"{p}.{key}" if p else str(key)
        return f"{self.source}: key '{p}'" if p else f"{self.source}"

    def error(self, key, msg):
        return ConfigError(f"{self.where(key)}: {msg}")

    def has(self, key):
        return key in self.data

    def get(self, key, types, default=..., check=None, expected=None):
        """Fetch ``key`` checked against ``types`` (and ``check``); ``default`` if absent."""
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                typo = difflib.get_close_matches(str(key), [str(k) for k in self.data], 1, 0.75)
                if typo and typo[0] not in self.used:
                    raise self.error(typo[0], f"unknown key (did you mean '{key}'?)")
                raise self.error(key, f"missing (expected {expected or _tname(types)})")
            return default
        v = self.data[key]
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in _tuple(types))
        if ok and float in _tuple(types) and isinstance(v, float) and v != v:
            ok = False
        if not ok or (check is not None and not check(v)):
            raise self.error(key, f"expected {expected or _tname(types)}, got {v!r}")
        return v

    def sub(self, key, default=...):
        """A nested mapping as a Doc."""
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, "missing (expected a mapping)")
            return None
        v = self.data[key]
        if not isinstance(v, dict):
            raise self.error(key, f"expected a mapping, got {v!r}")
        p = f"{self.path}.{key}" if self.path else str(key)
        return Doc(v, self.source, p)

    def finish(self):
        """Refuse keys nobody read (typos), suggesting the closest known key."""
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            k = unknown[0]
            known = sorted(str(u) for u in self.used)
            close = difflib.get_close_matches(str(k), known, 1, 0.6)
            hint = (f"did you mean '{close[0]}'?" if close
                    else f"expected one of: {', '.join(known)}")
            raise self.error(k, f"unknown key ({hint})")


def _tuple(t):
    return t if isinstance(t, tuple) else (t,)


def _tname(types):
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "a mapping", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in _tuple(types))


def header(doc: Doc, kind: str):
    k = doc.get("kind", str, expected=f"'{kind}'")
    if k != kind:
        raise doc.error("kind", f"expected '{kind}', got {k!r}")
    v = doc.get("version", int, expected="1")
    if v != 1:
        raise doc.error("version", f"expected 1, got {v!r}")
    doc.get("description", str, default=None)


# ---------------------------------------------------------------------------------------
# number formats

def format_from_doc(doc: Doc, default_name=None):
    """Build a format from a mapping (a number_format document, or an inline mapping)."""
    name = doc.get("name", str, default=default_name)
    typ = doc.get("type", str, default="float", check=lambda t: t in ("float", "int", "fixed"),
                  expected="'float', 'int' or 'fixed'")
    try:
        if typ == "float":
            fmt = FloatFormat(
                doc.get("exp_bits", int), doc.get("man_bits", int),
                subnormals=doc.get("subnormals", bool, default=True),
                specials=doc.get("specials", str, default="ieee"),
                overflow=doc.get("overflow", str, default="inf"),
                bias=doc.get("bias", int, default=None), name=name)
        elif typ == "int":
            fmt = IntFormat(doc.get("bits", int), signed=doc.get("signed", bool, default=True),
                            overflow=doc.get("overflow", str, default="wrap"), name=name)
        else:
            fmt = FixedFormat(doc.get("bits", int), doc.get("frac_bits", int),
                              signed=doc.get("signed", bool, default=True),
                              overflow=doc.get("overflow", str, default="wrap"), name=name)
    except ConfigError:
        raise
    except ValueError as exc:
        msg = str(exc)
        key, _, rest = msg.partition(": ")
        if key in doc.data:
            raise doc.error(key, rest) from None
        raise ConfigError(f"{doc.where()}: {msg}") from None
    doc.finish()
    return fmt


def _load_format_file(path: Path):
    doc = Doc(read_yaml(path), str(path))
    header(doc, "number_format")
    return format_from_doc(doc, default_name=path.stem)


_SPEC = re.compile(r"^e(\d+)m(\d+)(fnuz|fn)?$")
_INT = re.compile(r"^(u?)int(\d+)$")


def builtin_files(kind_dir: str) -> dict:
    """The built-in YAML files of one kind (``numbers``, ``accelerators``, ``technology``):
    {stem: path}, sorted by name."""
    return dict(_builtin_files_cached(kind_dir))


@functools.lru_cache(maxsize=None)
def _builtin_files_cached(kind_dir: str):
    # the package's own data: fixed for the life of the process
    d = builtin_dir() / kind_dir
    if not d.is_dir():
        return {}
    return {p.stem: p for p in sorted(d.glob("*.yaml"))}


@functools.lru_cache(maxsize=None)
def _builtin_format(name: str):
    return _load_format_file(_builtin_files_cached("numbers")[name])


def list_formats():
    """Names of the built-in number formats, sorted."""
    return sorted(builtin_files("numbers"))


def yaml_source(name_or_path, kind_dir: str, what: str):
    """The YAML file that ``name_or_path`` names: a path (a ``Path``, a name ending in
    .yaml/.yml, containing '/', or an existing file) or a built-in name of ``kind_dir``
    (``accelerators``, ``technology``, ``numbers``). None for any other string: the
    caller tries its own spellings or says what it expected. ``what`` names the
    argument in the error for a value that is neither a string nor a path."""
    if not isinstance(name_or_path, (str, Path)):
        raise ValueError(f"{what}: expected a name or path, got {name_or_path!r}")
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or s.endswith((".yaml", ".yml")) or "/" in s \
            or Path(s).is_file():
        return Path(s)
    return _builtin_files_cached(kind_dir).get(s)


def load_format(name_or_path):
    """A format from a built-in name, a YAML path, or a spec string.

    Spec strings: ``eXmY`` (IEEE-style float, optionally suffixed ``fn``/``fnuz``),
    ``intN`` / ``uintN`` (wrapping integers). Also accepts a format object (returned).
    """
    if isinstance(name_or_path, (FloatFormat, FixedFormat, IntFormat)):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise ValueError(f"format: expected a name or path, got {name_or_path!r}")
    s = str(name_or_path)
    p = Path(s)
    if s.endswith((".yaml", ".yml")) or p.is_file() or "/" in s:
        return _load_format_file(p)
    files = _builtin_files_cached("numbers")
    if s in files:
        return _builtin_format(s)
    m, mi = _SPEC.match(s), _INT.match(s)
    try:
        if m:
            return FloatFormat(int(m.group(1)), int(m.group(2)),
                               specials=m.group(3) or "ieee", overflow="inf", name=s)
        if mi:
            return IntFormat(int(mi.group(2)), signed=not mi.group(1), name=s)
    except ValueError as exc:     # a spec string with a width out of range
        raise ValueError(f"format {s!r}: {exc}") from None
    raise ValueError(
        f"format: unknown format {s!r} (expected a built-in name such as "
        f"{', '.join(list(files)[:4])}, a YAML path, eXmY or intN)")
