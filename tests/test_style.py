"""Project-wide rules that keep kernels bit-exact and the package installable."""

import re
from pathlib import Path

import accsim
from accsim.numerics.config import builtin_dir

ROOT = Path(__file__).resolve().parent.parent


def test_no_fastmath_in_kernels():
    """fastmath folds (x + c) - c and contracts to FMA: forbidden in rounding code."""
    offenders = []
    for path in (ROOT / "accsim").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"fastmath\s*=\s*(True|\{)", line):
                offenders.append(f"{path}:{n}")
    assert offenders == []


def test_builtin_yaml_found_and_all_load():
    d = builtin_dir()
    assert (d / "numbers").is_dir() and (d / "accelerators").is_dir()
    names = accsim.list_formats()
    for required in ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2",
                     "fp8_e4m3", "fp6_e3m2fn", "fp6_e2m3fn", "fp4_e2m1fn", "int4", "int8",
                     "int16", "int24", "int32"):
        assert required in names
    for name in names:
        assert accsim.load_format(name).name == name
    for name in accsim.list_accelerators():
        assert accsim.load_accelerator(name).name == name


def test_wheel_includes_builtin_formats():
    """The wheel maps the repository's formats/ and traces/ into the package (accsim/_data/)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^"formats"\s*=\s*"accsim/_data/formats"', text, re.M)


def test_public_surface():
    for name in accsim.__all__:
        assert hasattr(accsim, name), name
