"""Suite-wide guard: a run a test leaves live would become the current run of every later
test in the process, so each test's leftovers are finished when it ends."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _finish_runs_left_live():
    from runlake.emitter import lifecycle

    before = set(map(id, lifecycle.live_runs()))
    yield
    for run in lifecycle.live_runs():
        if id(run) not in before:
            run.finish()
