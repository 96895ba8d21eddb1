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
