"""HistoryService: the organization-scoped record of everything HemoVision classified."""

SERVICE_NAME = "hemovision.history.v1.HistoryService"
