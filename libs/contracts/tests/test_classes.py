import json
from pathlib import Path

from hemovision_contracts import CLASS_NAMES, WHITE_BLOOD_CELL_CLASSES

SHIPPED_MODELS = Path(__file__).resolve().parents[3] / "models" / "hemovision"


def test_class_names_are_in_output_unit_order():
    # ImageFolder numbers the class folders alphabetically; the model's output units follow.
    assert list(CLASS_NAMES) == sorted(CLASS_NAMES) and len(set(CLASS_NAMES)) == len(CLASS_NAMES)


def test_white_blood_cells_are_classes():
    assert set(WHITE_BLOOD_CELL_CLASSES) < set(CLASS_NAMES)
    assert "erythroblast" not in WHITE_BLOOD_CELL_CLASSES and "platelet" not in WHITE_BLOOD_CELL_CLASSES


def test_every_shipped_model_carries_the_platform_label_set():
    metadata = sorted(SHIPPED_MODELS.glob("*/assets.extra/hemovision.json"))
    assert metadata, f"no shipped model under {SHIPPED_MODELS}"
    for path in metadata:
        assert json.loads(path.read_text())["class_names"] == list(CLASS_NAMES), path
