"""The dependency contract: every range is capped below the next major release, the lock
pins a version inside every range, and the suite runs on exactly the lock unless CI's
second pass asked for the newest versions (RUNLAKE_DEPS=newest)."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if r.name != "runlake"]


def _lock() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[_norm(m.group(1))] = Version(m.group(2))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_every_range_stops_below_the_next_major(req):
    """A range without an upper bound lets a breaking major release reach users untested:
    each is capped below the major after the one locked (0.x releases: below 1.0)."""
    upper = [Version(s.version) for s in req.specifier if s.operator == "<"]
    assert [s for s in req.specifier if s.operator == ">="] and upper, f"{req}: needs >=LOW,<NEXT_MAJOR"
    locked = _lock()[_norm(req.name)]
    assert upper[0] == Version(str(locked.major + 1) if locked.major else "1"), (
        f"{req}: cap it below the next major after the locked {locked}")


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_the_lock_pins_every_dependency_inside_its_range(req):
    """requirements/lock.txt was compiled from these ranges (scripts/lock.sh)."""
    pins = _lock()
    assert _norm(req.name) in pins, f"{req.name} missing from {LOCK.name}: run scripts/lock.sh"
    assert req.specifier.contains(pins[_norm(req.name)], prereleases=True), (
        f"{req.name}=={pins[_norm(req.name)]} in the lock is outside {req.specifier}: "
        f"run scripts/lock.sh")


@pytest.mark.skipif(os.environ.get("RUNLAKE_DEPS") == "newest",
                    reason="CI's second pass runs on the newest allowed versions on purpose")
def test_this_environment_is_the_lock():
    """scripts/setup.sh installs exactly the lock, so a green suite means 'the lock works'."""
    drift = []
    for name, version in _lock().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            if name in {"setuptools", "pip"}:
                continue
            drift.append(f"{name}: not installed (lock {version})")
            continue
        if installed != version:
            drift.append(f"{name}: {installed} installed, lock {version}")
    assert not drift, "environment differs from requirements/lock.txt (run scripts/setup.sh): " + "; ".join(drift)
