"""The files of a sweep's output folder, written so that a sweep killed at any moment
loses at most the points in flight and duplicates nothing.

``results.jsonl``
    one JSON line per finished point (the file is locked while a sweep writes to it: a
    second sweep into the same folder is refused), ``{"id", "params", "accsim_version",
    "metrics", "seconds"}``, appended, flushed and fsynced by the parent process as each
    point finishes (:class:`ResultsWriter`). ``metrics``
    (:func:`accsim.experiments.sweep.point_metrics`) depend only on the parameters, never
    on the executor; ``seconds`` is the point's wall-clock time in the worker.
``spec.yaml``
    a copy of the last spec run into the folder (written atomically).

Resume: rerunning a sweep over the same folder skips the ids already in
``results.jsonl``; a torn last line (a sweep killed mid-write) is cut off first
(:func:`read_results` with ``repair``). Results of points that are not in the current
grid (an earlier, different spec) are kept in the file and not rerun; ``accsim report``
covers every point in the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .spec import canonical_json

try:                    # POSIX only; elsewhere results.jsonl is not locked
    import fcntl
except ImportError:     # pragma: no cover
    fcntl = None

RESULTS = "results.jsonl"
SPEC_COPY = "spec.yaml"


def _record(line: bytes):
    """The result record of one line (``None`` for a blank line); ``ValueError`` (or
    ``UnicodeDecodeError``) when the line is not one."""
    rec = json.loads(line.decode("utf-8")) if line.strip() else None
    if rec is not None and (not isinstance(rec, dict) or "id" not in rec
                            or "params" not in rec or "metrics" not in rec):
        raise ValueError("not a result record")
    return rec


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
        lineno += 1
        try:
            rec = _record(data[pos:end])
        except (ValueError, UnicodeDecodeError):
            if end >= len(data):
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


class ResultsWriter:
    """Appends one record per line to results.jsonl, flushed and fsynced each time; holds
    an exclusive lock on the file (released by the system if the process dies). A
    ``ValueError`` when another sweep holds it."""

    def __init__(self, path: Path):
        self.fh = open(path, "ab")  # noqa: SIM115 - held open across the sweep
        if fcntl is None:  # pragma: no cover - not POSIX: no lock
            return
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise ValueError(f"--out: {path} is in use by another running sweep") from None

    def write(self, rec: dict):
        """Append ``rec`` as one canonical JSON line, on disk when this returns."""
        line = canonical_json(rec).encode("utf-8") + b"\n"
        self.fh.write(line)
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self):
        self.fh.close()
