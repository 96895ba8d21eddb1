"""HistoryService: the organization-scoped record of everything HemoVision classified."""

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

SERVICE_NAME = "hemovision.history.v1.HistoryService"
