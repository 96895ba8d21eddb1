"""ReportsServicer: protobuf <-> service calls only."""

from __future__ import annotations

from hemovision.reports.v1 import reports_pb2, reports_pb2_grpc
from hemovision_contracts import origin_from_metadata
from hemovision_tokens import current_principal

from hemovision_reports.service import Caller, Report, ReportsService


def _caller(context) -> Caller:  # noqa: ANN001
    principal = current_principal()
    client_ip, user_agent = origin_from_metadata(context.invocation_metadata())
    return Caller(token=principal.token, organization_id=principal.organization_id, client_ip=client_ip,
                  user_agent=user_agent)


def _to_pb(report: Report) -> reports_pb2.Report:
    return reports_pb2.Report(pdf=report.pdf, filename=report.filename, pages=report.pages)


class ReportsServicer(reports_pb2_grpc.ReportsServiceServicer):
    def __init__(self, service: ReportsService) -> None:
        self.service = service

    async def RenderPredictionReport(self, request, context):  # noqa: ANN001, N802
        return _to_pb(await self.service.prediction_report(_caller(context), request.prediction_id))

    async def RenderBatchReport(self, request, context):  # noqa: ANN001, N802
        return _to_pb(await self.service.batch_report(_caller(context), request.batch_id))
