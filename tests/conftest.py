"""Test configuration: hypothesis profiles and the quick tier.

Full run (what CI runs): ``python -m pytest``. Quick tier: ``python -m pytest -m "not
slow"``: it leaves out the tests marked ``slow`` (exhaustive grids, subprocess
scenarios on every scheduler, long end-to-end runs) and, of every test function with
more than :data:`QUICK_PER_FUNCTION` parameter sets (:data:`QUICK_SAMPLE` for a few
whose every set takes seconds), all but an evenly spread sample of that many (they are
marked ``slow`` here at collection); hypothesis runs
:data:`QUICK_EXAMPLES` examples per property instead of 200 (profile ``quick``).
``HYPOTHESIS_PROFILE`` (ci, quick, thorough) overrides the profile.
"""

import math
import os
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, settings

#: parameter sets of one test function kept in the quick tier
QUICK_PER_FUNCTION = 8
#: hypothesis examples per property in the quick tier
QUICK_EXAMPLES = 20
#: fewer parameter sets in the quick tier for test functions whose every set takes
#: seconds (measured with --durations, warm numba cache)
QUICK_SAMPLE = {
    "test_zero_steps_in_selected_outputs": 1,
    "test_zero_skips_in_selected_rows": 1,
    "test_zero_rows_of_a": 2,
    "test_oracle_at_the_switch": 4,
    "test_dot_matches_accelerator": 2,
    "test_step_bit_exact": 2,
    "test_round_bit_exact": 2,
    "test_zero_bound_violations_on_bundled_traces": 3,
    "test_correct_fp16_model_passes": 1,
}

settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("quick", max_examples=QUICK_EXAMPLES, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


def _quick(config) -> bool:
    """Whether this run is the quick tier (``-m`` deselects the slow tests)."""
    expr = " ".join(config.getoption("markexpr", "").split())
    return "not slow" in expr


def pytest_configure(config):
    default = "quick" if _quick(config) else "ci"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` all but an evenly spread sample of :data:`QUICK_PER_FUNCTION`
    (or :data:`QUICK_SAMPLE`'s number) parameter sets of every larger parametrized test
    function."""
    groups = defaultdict(list)
    for item in items:
        if getattr(item, "callspec", None) is not None:
            groups[(item.nodeid.split("::")[0], item.originalname)].append(item)
    for (_, name), group in groups.items():
        n = QUICK_SAMPLE.get(name, QUICK_PER_FUNCTION)
        if len(group) <= n:
            continue
        step = len(group) / n
        keep = {math.floor(i * step) for i in range(n)}
        for i, item in enumerate(group):
            if i not in keep:
                item.add_marker(pytest.mark.slow)
