"""Export publishes atomically: servers never see a partial version directory."""
import threading
from pathlib import Path

import pytest

from hemovision_training.ml import export as export_mod
from hemovision_training.ml.data import base_spec_dict
from hemovision_training.ml.model import build_model

KW = dict(spec=base_spec_dict(32, [0.5] * 3, [0.2] * 3), temperature=1.2, review_threshold=0.9,
          ood_threshold=-5.0, metrics={"test": {}, "val": {}}, training_info={}, data_hash="sha256:x")


@pytest.fixture(scope="module")
def small_model():
    return build_model(32, widths=(8, 16), blocks=(1, 1), stem_width=0)


def _complete(version_dir: Path) -> bool:
    return ((version_dir / "saved_model.pb").is_file() and (version_dir / "variables" / "variables.index").is_file()
            and (version_dir / "assets.extra" / "hemovision.json").is_file()
            and (version_dir / "assets.extra" / "tf_serving_warmup_requests").is_file())


def test_versions_increment_and_only_complete_dirs_are_visible(tmp_path, small_model):
    base = tmp_path / "models"
    seen_partial = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            d = base / "hemovision"
            if d.is_dir():
                for p in d.iterdir():
                    if p.name.isdigit() and not _complete(p):
                        seen_partial.append(p.name)

    t = threading.Thread(target=watch)
    t.start()
    try:
        p1 = export_mod.export_model(small_model, model_base=base, **KW)
        p2 = export_mod.export_model(small_model, model_base=base, **KW)
    finally:
        stop.set()
        t.join()
    assert (p1.name, p2.name) == ("1", "2")
    assert not seen_partial
    assert sorted(p.name for p in (base / "hemovision").iterdir()) == ["1", "2"]  # no temp dirs left
    assert export_mod.read_metadata(p2)["version"] == 2
    with pytest.raises(FileExistsError):
        export_mod.export_model(small_model, model_base=base, version=2, **KW)


def test_failed_export_leaves_nothing(tmp_path, small_model, monkeypatch):
    base = tmp_path / "models"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "_warmup_records", boom)  # fails after the SavedModel is written
    with pytest.raises(RuntimeError, match="disk full"):
        export_mod.export_model(small_model, model_base=base, **KW)
    assert list((base / "hemovision").iterdir()) == []
