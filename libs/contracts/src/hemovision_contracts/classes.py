"""The platform's label set: the cell classes every HemoVision model is trained on.

Defined once, here. The training label set imports it and writes it into each exported model's
metadata (hemovision.json "class_names", served as inference ModelInfo.class_names). Code that has
a model's answer at hand derives the classes from it (the keys of a prediction's probabilities);
this list is for the places that have none: the training data set, validating a prediction
before it is stored, a filter, and class counts that must name the classes nobody saw.
"""

from __future__ import annotations

# Alphabetical, as ImageFolder numbers the class folders: the index is the model's output unit.
CLASS_NAMES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature_granulocyte",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

# The white blood cells: the denominator of the WBC differential (erythroblasts are counted per
# 100 WBC, platelets are no cells of the differential).
WHITE_BLOOD_CELL_CLASSES: tuple[str, ...] = tuple(c for c in CLASS_NAMES if c not in {"erythroblast", "platelet"})
