"""schemas/objects.py against a real S3 API server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import threading

import pytest

from runlake.schemas.objects import (
    ObjectMissing, ObjectStore, ObjectStoreError, is_url, split_url, storage_options,
)


def test_urls_are_split_and_checked():
    assert is_url("s3://b/p") and not is_url("/tmp/x") and not is_url(None)
    assert split_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_url("s3://bucket") == ("bucket", "")
    for bad in ("s3://", "s3:///x", "s3://b/a/../c", "s3://b/a//c", "/local"):
        with pytest.raises(ObjectStoreError):
            split_url(bad)


def test_put_get_list_delete_round_trip(s3_root):
    store = ObjectStore(s3_root)
    assert store.put_new("p/r/w/000001.jsonl.zst", b"0123456789")
    assert store.get("p/r/w/000001.jsonl.zst") == b"0123456789"
    assert store.get("p/r/w/000001.jsonl.zst", 2, 5) == b"234"
    assert store.get("p/r/w/000001.jsonl.zst", 7) == b"789"
    [info] = list(store.list("p/"))
    assert (info.rel, info.size) == ("p/r/w/000001.jsonl.zst", 10)
    assert store.head("p/r/w/000001.jsonl.zst").size == 10
    store.delete("p/r/w/000001.jsonl.zst")
    assert store.head("p/r/w/000001.jsonl.zst") is None
    with pytest.raises(ObjectMissing, match="no such object"):
        store.get("p/r/w/000001.jsonl.zst")


def test_put_new_never_replaces_and_one_racer_wins(s3_root):
    store = ObjectStore(s3_root)
    assert store.put_new("seg", b"first")
    assert not store.put_new("seg", b"second")
    assert store.get("seg") == b"first"
    wins = []
    def race(i):
        wins.append(store.put_new("race", str(i).encode()))
    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert wins.count(True) == 1
    assert store.get("race") == str(wins.index(True)).encode() or store.get("race").isdigit()


def test_put_if_match_replaces_only_the_expected_version(s3_root):
    store = ObjectStore(s3_root)
    etag = store.put("lease", b"a")
    new = store.put_if_match("lease", b"b", etag)
    assert new and new != etag
    assert store.put_if_match("lease", b"c", etag) is None  # stale etag: refused
    assert store.get("lease") == b"b"
    assert store.put_if_match("missing", b"x", etag) is None


def test_keys_never_leave_the_prefix(s3_root):
    store = ObjectStore(s3_root)
    for bad in ("../x", "a/../../x", "/abs", "a//b", ""):
        with pytest.raises(ObjectStoreError):
            store.key(bad)


def test_missing_bucket_bad_credentials_unreachable_endpoint(s3_server, s3_env, monkeypatch):
    with pytest.raises(ObjectStoreError, match="does not exist"):
        ObjectStore("s3://no-such-bucket-here/p").check()
    with pytest.raises(ObjectStoreError, match="does not exist"):
        ObjectStore("s3://no-such-bucket-here/p").put_new("x", b"1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    store = ObjectStore("s3://b/p", timeout_s=0.5, attempts=2)
    with pytest.raises(ObjectStoreError, match="unreachable"):
        store.put_new("x", b"1")


def test_storage_options_follow_the_environment(s3_env):
    opts = storage_options("s3://b/lake")
    assert opts["AWS_ENDPOINT_URL"] == s3_env["AWS_ENDPOINT_URL"]
    assert opts["AWS_ALLOW_HTTP"] == "true"
    assert opts["AWS_ACCESS_KEY_ID"] == "testing"


def test_refused_credentials_are_one_clear_line(monkeypatch):
    from ._server import MotoServer
    with MotoServer(check_credentials=True) as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        bucket = server.new_bucket()
        store = ObjectStore(f"s3://{bucket}/p")
        assert store.put_new("ok", b"1")  # the server's own key works
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        with pytest.raises(ObjectStoreError, match="credentials were refused"):
            ObjectStore(f"s3://{bucket}/p").get("ok")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
        with pytest.raises(ObjectStoreError, match="credentials were refused"):
            ObjectStore(f"s3://{bucket}/p").check()


def test_folders_and_odd_keys(s3_root, s3_server):
    store = ObjectStore(s3_root)
    for rel in ("p1/r/w/1", "p2/x", "top", "runlake-lake/t/_delta_log/0.json"):
        store.put(rel, b"1")
    s3_server.client().put_object(Bucket=store.bucket, Key=store.key("p1") + "//odd", Body=b"1")
    assert sorted(store.folders()) == ["p1", "p2", "runlake-lake"]
    odd: list[str] = []
    assert [o.rel for o in store.list("p1/", odd=odd)] == ["p1/r/w/1"]
    assert odd == [store.key("p1") + "//odd"]
