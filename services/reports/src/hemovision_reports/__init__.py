"""ReportsService: PDF reports of one prediction or one batch (ReportLab)."""

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

SERVICE_NAME = "hemovision.reports.v1.ReportsService"
