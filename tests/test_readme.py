"""The README's Python analysis snippet runs as printed."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _section_code(heading):
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_analysis_snippet_runs():
    code = _section_code("### κ and error bounds from Python")
    assert "analysis.kappa_inner" in code and "analysis.error_bound" in code
    out = io.StringIO()
    scope = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)     # noqa: S102 - our own README
    assert scope["kappa"].shape == (4, 3)
    assert (scope["observed"] <= scope["bound"]).all()
    assert out.getvalue().rstrip().endswith("True 0")
