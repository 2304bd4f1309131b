"""Fixtures for the object-storage tests: one real moto S3 server per session.

``s3_server`` starts it (``tests/s3/_server.py``); ``s3_env`` puts its AWS settings into
this process's environment (and gives them as a dict for subprocesses); ``s3_root`` is a
fresh bucket's ``s3://<bucket>/runs`` per test, so tests never see each other's objects.
"""

from __future__ import annotations

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from ._server import MotoServer  # noqa: E402


@pytest.fixture(scope="session")
def s3_server():
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return dict(s3_server.env)


@pytest.fixture
def s3_bucket(s3_server, s3_env) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def s3_root(s3_bucket) -> str:
    return f"s3://{s3_bucket}/runs"
