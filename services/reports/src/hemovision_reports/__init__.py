"""ReportsService: PDF reports of one prediction or one batch (ReportLab)."""

SERVICE_NAME = "hemovision.reports.v1.ReportsService"
