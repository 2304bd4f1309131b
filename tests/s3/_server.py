"""A real S3 API server for the tests and benches: moto's server mode on 127.0.0.1.

Not a mock of runlake's code: a separate process speaking the S3 REST API (signatures,
conditional writes, ranges, multipart uploads), reached over loopback by boto3 and by
delta-rs exactly as they would reach AWS S3. Import it from a bench with
``importlib`` (bench/ is not a package of the tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

__all__ = ["MotoServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``with MotoServer() as srv:`` a moto S3 server; ``srv.env`` has the AWS settings."""

    def __init__(self, port: int | None = None, *, check_credentials: bool = False) -> None:
        """``check_credentials``: the server refuses unknown access keys (moto's IAM auth,
        after 3 unauthenticated requests: :meth:`start` spends them creating a user with
        full S3 rights whose key :attr:`env` then carries)."""
        self.port = port or free_port()
        self.check_credentials = check_credentials
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> "MotoServer":
        env = dict(os.environ)
        if self.check_credentials:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # _make_user's 3 requests
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).read()
            except OSError:
                time.sleep(0.1)
                continue
            if self.check_credentials:
                self._make_user()
            return self
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} in {timeout_s} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def _make_user(self) -> None:
        import boto3
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_user(UserName="runlake")
        iam.put_user_policy(UserName="runlake", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="runlake")["AccessKey"]
        self.env["AWS_ACCESS_KEY_ID"] = key["AccessKeyId"]
        self.env["AWS_SECRET_ACCESS_KEY"] = key["SecretAccessKey"]

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self, name: str | None = None) -> str:
        """Create a fresh bucket; returns its name."""
        name = name or f"b-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
