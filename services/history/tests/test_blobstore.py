"""LocalBlobStore: atomic writes, no path traversal. (S3BlobStore is not exercised here:
no S3-compatible endpoint runs on the test machines.)"""

from __future__ import annotations

import pytest

from hemovision_history.blobstore import BlobMissing, LocalBlobStore, blob_key


def test_put_get_delete(tmp_path):
    store = LocalBlobStore(tmp_path)
    key = blob_key("org-1", "p1", "image")
    store.put(key, b"\x89PNG data")
    assert store.get(key) == b"\x89PNG data"
    store.put(key, b"replaced")
    assert store.get(key) == b"replaced"
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]  # no temp file left
    store.delete(key)
    store.delete(key)  # idempotent
    with pytest.raises(BlobMissing):
        store.get(key)
    assert (tmp_path / "org-1").is_dir()


@pytest.mark.parametrize("key", ["../escape.png", "org/../../etc/passwd", "/abs/path", "org//x", "org/.hidden", "single", "org/a\\b"])
def test_traversal_and_odd_keys_are_refused(tmp_path, key):
    store = LocalBlobStore(tmp_path / "root")
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.get(key)


def test_put_many_stores_all_and_leaves_no_temp_files(tmp_path):
    store = LocalBlobStore(tmp_path)
    items = [(f"org-1/predictions/p{i}/image.png", bytes([i]) * (1000 + i)) for i in range(5)]
    store.put_many(items)
    assert [store.get(k) for k, _ in items] == [d for _, d in items]
    assert not list(tmp_path.rglob(".tmp-*"))
    with pytest.raises(ValueError):  # one bad key: nothing half-written is left behind
        store.put_many([("org-1/predictions/q/image.png", b"x"), ("../escape", b"y")])
    assert not list(tmp_path.rglob(".tmp-*")) and not store.exists("org-1/predictions/q/image.png")


def test_predictions_share_shard_directories(tmp_path):
    """No directory per prediction (a third inode and an mkdir per upload): 256 shards per
    organization, named by the prediction id's first two hex digits."""
    store = LocalBlobStore(tmp_path)
    ids = ["ab000000-0000-4000-8000-000000000001", "ab000000-0000-4000-8000-000000000002",
           "cd000000-0000-4000-8000-000000000003"]
    keys = [blob_key("org-1", p, kind) for p in ids for kind in ("image", "heatmap")]
    store.put_many([(k, k.encode()) for k in keys])
    assert [store.get(k) for k in keys] == [k.encode() for k in keys]
    assert sorted(p.name for p in (tmp_path / "org-1" / "predictions").iterdir()) == ["ab", "cd"]
    assert len(list((tmp_path / "org-1" / "predictions" / "ab").iterdir())) == 4
    store.delete(keys[0])
    assert store.get(keys[1]) == keys[1].encode()  # the shard stays while it holds other blobs


def test_older_per_prediction_keys_stay_readable_and_deletable(tmp_path):
    store = LocalBlobStore(tmp_path)
    legacy = "org-1/predictions/0b6a7c1e-0000-4000-8000-000000000000/image.png"  # pre-shard layout
    store.put(legacy, b"old")
    assert store.get(legacy) == b"old"
    store.delete(legacy)
    assert not store.exists(legacy)
    assert not (tmp_path / "org-1" / "predictions" / "0b6a7c1e-0000-4000-8000-000000000000").exists()


def test_write_survives_a_concurrent_delete_emptying_its_shard(tmp_path, monkeypatch):
    """delete() drops a shard it leaves empty; a put racing it (shard removed between its mkdir
    and its temp file) makes the directory again instead of failing the upload."""
    import tempfile

    store = LocalBlobStore(tmp_path)
    first = blob_key("org-1", "ab000000-0000-4000-8000-000000000001", "image")
    second = blob_key("org-1", "ab000000-0000-4000-8000-000000000002", "image")
    store.put(first, b"1")
    real_mkstemp, raced = tempfile.mkstemp, []

    def mkstemp_after_a_racing_delete(*args, **kwargs):
        if not raced:
            raced.append(True)
            store.delete(first)  # the shard's last blob goes, and with it the shard directory
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_after_a_racing_delete)
    store.put_many([(second, b"2")])
    assert raced and store.get(second) == b"2" and not store.exists(first)
