"""Small in-memory fakes of OUR gRPC interfaces (auth, preprocess, inference, history,
reports, training), served by a real grpc.aio server on port 0 behind the generated stubs.
They scope everything by the organization of the verified caller token, like the real services."""

from __future__ import annotations

import io
import struct
import time
import uuid
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from PIL import Image

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision.preprocess.v1 import preprocess_pb2, preprocess_pb2_grpc
from hemovision.reports.v1 import reports_pb2, reports_pb2_grpc
from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import TokenError

from adaptation_fakes import AdaptationFakes

CLASSES = ["basophil", "eosinophil", "erythroblast", "immature_granulocyte", "lymphocyte", "monocyte",
           "neutrophil", "platelet"]
ROLE = {"lab_user": common_pb2.ROLE_LAB_USER, "org_admin": common_pb2.ROLE_ORG_ADMIN,
        "ml_engineer": common_pb2.ROLE_ML_ENGINEER, "platform_admin": common_pb2.ROLE_PLATFORM_ADMIN}
SERVICE_SECRET = "test-service-secret"


@dataclass
class World:
    """Shared state of all fakes."""

    factory: TokenFactory = field(default_factory=TokenFactory)
    users: dict[str, auth_pb2.User] = field(default_factory=dict)
    predictions: dict[str, history_pb2.Prediction] = field(default_factory=dict)
    blobs: dict[tuple[str, int], bytes] = field(default_factory=dict)
    idem: dict[tuple[str, str], str] = field(default_factory=dict)
    batches: dict[str, history_pb2.Batch] = field(default_factory=dict)
    items: dict[tuple[str, int], history_pb2.BatchItem] = field(default_factory=dict)
    api_keys: dict[str, tuple[str, auth_pb2.ApiKey]] = field(default_factory=dict)  # secret -> (user_id, key)
    calls: list[str] = field(default_factory=list)
    audit: list[history_pb2.AuditEvent] = field(default_factory=list)
    inference_down: bool = False
    explain_delay: float = 0.0
    explain_calls: list[tuple[str, int]] = field(default_factory=list)  # (caller's user id, images) per Explain
    record_group_sizes: list[int] = field(default_factory=list)  # items per RecordPredictions
    adaptations: dict[str, training_pb2.Adaptation] = field(default_factory=dict)
    org_versions: dict[str, list[int]] = field(default_factory=dict)  # organization -> its adapted versions
    stale_orgs: set[str] = field(default_factory=set)
    adapt_outcome: str = "succeeded"  # how the next finishing adaptation ends: succeeded, rejected, failed
    drift: dict[str, history_pb2.DriftReport] = field(default_factory=dict)  # organization -> its GetDrift answer

    def user(self, role: str = "org_admin", org: str | None = None, email: str | None = None) -> tuple[auth_pb2.User, str]:
        """Creates a user and returns it with a fresh access token."""
        uid = str(uuid.uuid4())
        if org is None:
            org = "" if role in ("ml_engineer", "platform_admin") else str(uuid.uuid4())
        u = auth_pb2.User(id=uid, email=email or f"{uid[:8]}@lab.example", organization_id=org,
                          organization_name=f"org-{org[:6]}", role=ROLE[role], active=True, email_verified=True)
        self.users[uid] = u
        return u, self.token_for(u)

    def token_for(self, u: auth_pb2.User, **kw) -> str:
        role = {v: k for k, v in ROLE.items()}[u.role]
        return self.factory.issue(user_id=u.id, organization_id=u.organization_id, role=role, email=u.email, **kw)

    def count_records(self) -> int:
        return len(self.predictions)

    def add_reviewed(self, org: str, n: int) -> None:
        """n reviewed predictions of an organization (what adaptation trains on)."""
        for _ in range(n):
            pid = str(uuid.uuid4())
            self.predictions[pid] = history_pb2.Prediction(id=pid, organization_id=org, label="neutrophil",
                                                           confidence=0.9, reviewed_label="lymphocyte")


async def caller(world: World, context: grpc.aio.ServicerContext):
    md = dict(context.invocation_metadata())
    header = md.get("authorization", "")
    try:
        return await world.factory.verifier().verify(header.removeprefix("Bearer "))
    except TokenError as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    async def Register(self, request, context):
        if any(u.email == request.email for u in self.w.users.values()):
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "e-mail address already registered")
        if len(request.password) < 10:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "password must be at least 10 characters")
        u, _ = self.w.user("org_admin", email=request.email)
        u.organization_name = request.organization_name
        self.w.passwords = getattr(self.w, "passwords", {})
        self.w.passwords[request.email] = request.password
        return u

    async def Login(self, request, context):
        passwords = getattr(self.w, "passwords", {})
        if passwords.get(request.email) != request.password:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong e-mail or password")
        u = next(u for u in self.w.users.values() if u.email == request.email)
        return auth_pb2.TokenPair(access_token=self.w.token_for(u), refresh_token=f"r.{u.id}",
                                  token_type="bearer", expires_in=900)

    async def Refresh(self, request, context):
        uid = request.refresh_token.removeprefix("r.")
        if uid not in self.w.users:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid refresh token")
        return auth_pb2.TokenPair(access_token=self.w.token_for(self.w.users[uid]), refresh_token=f"r.{uid}",
                                  token_type="bearer", expires_in=900)

    async def Logout(self, request, context):
        await caller(self.w, context)
        self.w.calls.append("logout")
        return empty_pb2.Empty()

    async def GetMe(self, request, context):
        p = await caller(self.w, context)
        return self.w.users[p.user_id]

    def _same_org(self, p, uid):
        u = self.w.users.get(uid)
        if u is None or (p.role != "platform_admin" and u.organization_id != p.organization_id):
            return None
        return u

    async def GetUser(self, request, context):
        p = await caller(self.w, context)
        u = self._same_org(p, request.user_id)
        if u is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        return u

    async def ListUsers(self, request, context):
        p = await caller(self.w, context)
        return auth_pb2.ListUsersResponse(users=[u for u in self.w.users.values()
                                                 if p.role == "platform_admin" or u.organization_id == p.organization_id])

    async def SetUserRole(self, request, context):
        p = await caller(self.w, context)
        u = self._same_org(p, request.user_id)
        if u is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        u.role = request.role
        return u

    async def SetUserActive(self, request, context):
        p = await caller(self.w, context)
        u = self._same_org(p, request.user_id)
        if u is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        u.active = request.active
        return u

    async def DeleteUser(self, request, context):
        p = await caller(self.w, context)
        if self._same_org(p, request.user_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        del self.w.users[request.user_id]
        return empty_pb2.Empty()

    async def ChangePassword(self, request, context):
        await caller(self.w, context)
        return empty_pb2.Empty()

    async def InviteUser(self, request, context):
        await caller(self.w, context)
        return auth_pb2.Invitation(id=str(uuid.uuid4()), email=request.email, role=request.role)

    async def AcceptInvitation(self, request, context):
        if request.token != "invite-ok":
            await context.abort(grpc.StatusCode.NOT_FOUND, "invitation not found or expired")
        u, _ = self.w.user("lab_user")
        return u

    async def RequestEmailVerification(self, request, context):
        await caller(self.w, context)
        return empty_pb2.Empty()

    async def VerifyEmail(self, request, context):
        if request.token != "verify-ok":
            await context.abort(grpc.StatusCode.NOT_FOUND, "invalid or expired link")
        return next(iter(self.w.users.values()))

    async def RequestPasswordReset(self, request, context):
        return empty_pb2.Empty()

    async def ResetPassword(self, request, context):
        if request.token != "reset-ok":
            await context.abort(grpc.StatusCode.NOT_FOUND, "invalid or expired link")
        return empty_pb2.Empty()

    async def CreateApiKey(self, request, context):
        p = await caller(self.w, context)
        secret = "hv_" + uuid.uuid4().hex
        key = auth_pb2.ApiKey(id=str(uuid.uuid4()), name=request.name, prefix=secret[:7], secret=secret)
        stored = auth_pb2.ApiKey()
        stored.CopyFrom(key)
        stored.secret = ""
        self.w.api_keys[secret] = (p.user_id, stored)
        return key

    async def ListApiKeys(self, request, context):
        p = await caller(self.w, context)
        return auth_pb2.ListApiKeysResponse(keys=[k for uid, k in self.w.api_keys.values() if uid == p.user_id])

    async def RevokeApiKey(self, request, context):
        p = await caller(self.w, context)
        for secret, (uid, k) in list(self.w.api_keys.items()):
            if k.id == request.key_id and uid == p.user_id:
                del self.w.api_keys[secret]
                return empty_pb2.Empty()
        await context.abort(grpc.StatusCode.NOT_FOUND, "API key not found")

    async def ExchangeApiKey(self, request, context):
        entry = self.w.api_keys.get(request.api_key)
        if entry is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked API key")
        self.w.calls.append("exchange")
        return auth_pb2.AccessToken(access_token=self.w.token_for(self.w.users[entry[0]]), token_type="bearer",
                                    expires_in=900)

    async def IssueOnBehalfOfToken(self, request, context):
        if request.service_secret != SERVICE_SECRET:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad service credential")
        u = self.w.users.get(request.user_id)
        if u is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        self.w.calls.append("obo")
        return auth_pb2.AccessToken(access_token=self.w.token_for(u, act=request.service_id), expires_in=300)

    async def ListOrganizations(self, request, context):
        p = await caller(self.w, context)
        orgs = {u.organization_id for u in self.w.users.values() if u.organization_id}
        if p.role != "platform_admin":
            orgs = {p.organization_id}
        return auth_pb2.ListOrganizationsResponse(organizations=[auth_pb2.Organization(id=o, name=f"org-{o[:6]}")
                                                                 for o in sorted(orgs)])


def _png_dims(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


class FakePreprocess(preprocess_pb2_grpc.PreprocessServiceServicer):
    """Decides like the real service would, reporting reasons as 'reason: message'."""

    def __init__(self, world: World) -> None:
        self.w = world

    async def Preprocess(self, request, context):
        await caller(self.w, context)
        outcome = self.prepare(request)
        if isinstance(outcome, preprocess_pb2.PreprocessError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"[{outcome.reason}] {outcome.message}")
        return outcome

    async def PreprocessBatch(self, request, context):
        await caller(self.w, context)
        response = preprocess_pb2.PreprocessBatchResponse()
        for i, item in enumerate(request.items):
            outcome = self.prepare(item)
            if isinstance(outcome, preprocess_pb2.PreprocessError):
                response.results.add(index=i, error=outcome)
            else:
                response.results.add(index=i, result=outcome)
        return response

    def prepare(self, request):
        data = request.image
        dims = _png_dims(data)
        if dims and dims[0] * dims[1] > 40_000_000:
            return preprocess_pb2.PreprocessError(
                reason="too_many_pixels", message=f"The image declares {dims[0]}x{dims[1]} pixels; the limit is 40,000,000.")
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
        except Exception:  # noqa: BLE001
            return preprocess_pb2.PreprocessError(reason="truncated", message="The image data ends early (truncated file).")
        size = request.spec.input_size or 8
        arr = np.asarray(im.convert("RGB").resize((size, size)), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(arr).save(out, format="PNG")
        tensor = common_pb2.Tensor(shape=[1, size, size, 3], dtype=common_pb2.DTYPE_FLOAT32,
                                   data=(arr.astype("<f4") / 255.0).tobytes())
        # like a v2 spec on a blank, bright field: nothing stained, so no cell to frame
        blank = bool(arr.reshape(-1, 3).std(axis=0).max() < 1.0 and arr.min() > 200)
        return preprocess_pb2.PreprocessResponse(tensor=tensor, original_width=im.width, original_height=im.height,
                                                 sha256="0" * 64, format=im.format or "PNG",
                                                 model_image_png=out.getvalue(), decode_ms=1.0, pixels_ms=0.5,
                                                 review_reasons=["cell_not_found"] if blank else [],
                                                 cell_found=not blank, cell_zoom=1.0)


class FakeInference(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    async def GetActiveModel(self, request, context):
        await caller(self.w, context)
        if self.w.inference_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model server unavailable")
        return inference_pb2.ModelInfo(model=common_pb2.ModelRef(name="hemovision", version=1), class_names=CLASSES,
                                       input_size=8, preprocessing=common_pb2.PreprocessSpec(version=1, input_size=8),
                                       temperature=1.5, review_threshold=0.6)

    async def Explain(self, request, context):
        who = await caller(self.w, context)
        if self.w.inference_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model server unavailable")
        if self.w.explain_delay:
            import asyncio

            await asyncio.sleep(self.w.explain_delay)
        probs = {c: 0.01 for c in CLASSES}
        probs["neutrophil"] = 0.93
        heat = np.linspace(0, 1, 64, dtype="<f4").reshape(8, 8)
        images = np.frombuffer(request.images.data, dtype="<f4").reshape(tuple(request.images.shape))
        self.w.explain_calls.append((who.user_id, len(images)))
        # ood_score = the image's mean pixel: lets tests tell whose answer is whose in a shared call
        return inference_pb2.ClassifyResponse(
            results=[inference_pb2.Classification(
                label="neutrophil", confidence=0.93, probabilities=probs, needs_review=False,
                ood_score=float(image.mean()),
                heatmap=common_pb2.Tensor(shape=[8, 8], dtype=common_pb2.DTYPE_FLOAT32, data=heat.tobytes()))
                for image in images],
            model=common_pb2.ModelRef(name="hemovision", version=1), model_ms=3.0)


    async def AnalyzeImages(self, request, context):
        """Like the real service: preprocess each image (the fake's rules), explain the accepted ones."""
        who = await caller(self.w, context)
        if self.w.inference_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model server unavailable")
        if self.w.explain_delay:
            import asyncio

            await asyncio.sleep(self.w.explain_delay)
        info = await self.GetActiveModel(inference_pb2.GetActiveModelRequest(), context)
        prepared = [FakePreprocess(self.w).prepare(preprocess_pb2.PreprocessRequest(
            image=data, spec=info.preprocessing, want_model_image=request.want_model_image)) for data in request.images]
        accepted = [p for p in prepared if not isinstance(p, preprocess_pb2.PreprocessError)]
        if accepted:
            self.w.explain_calls.append((who.user_id, len(accepted)))
        probs = {c: 0.01 for c in CLASSES}
        probs["neutrophil"] = 0.93
        response = inference_pb2.AnalyzeImagesResponse(model=info, model_ms=3.0, preprocess_ms=1.5)
        for p in prepared:
            if isinstance(p, preprocess_pb2.PreprocessError):
                response.results.add(error=p)
                continue
            image = np.frombuffer(p.tensor.data, dtype="<f4")
            # ood_score = the image's mean pixel: lets tests tell whose answer is whose in a shared call
            response.results.add(result=inference_pb2.AnalyzedImage(
                classification=inference_pb2.Classification(
                    label="neutrophil", confidence=0.93, probabilities=probs, needs_review=False,
                    ood_score=float(image.mean())),
                heatmap_png=HEATMAP_PNG if request.want_heatmap else b"", model_image_png=p.model_image_png,
                sha256=p.sha256, needs_review=bool(p.review_reasons), review_reasons=list(p.review_reasons),
                decode_ms=p.decode_ms, pixels_ms=p.pixels_ms))
        return response


def _heatmap_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.linspace(0, 255, 64, dtype=np.uint8).reshape(8, 8), "L").save(out, format="PNG")
    return out.getvalue()


HEATMAP_PNG = _heatmap_png()


class FakeHistory(history_pb2_grpc.HistoryServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    def _get(self, p, pid):
        pred = self.w.predictions.get(pid)
        return pred if pred is not None and pred.organization_id == p.organization_id else None

    async def RecordPrediction(self, request, context):
        return self._record(await caller(self.w, context), request)

    async def RecordPredictions(self, request, context):
        p = await caller(self.w, context)
        self.w.record_group_sizes.append(len(request.items))
        response = history_pb2.RecordPredictionsResponse()
        for item in request.items:
            if item.prediction.label == "reject-me":  # lets tests fail one item of a group
                response.results.add(error=history_pb2.ItemError(code=3, message="label: rejected on purpose"))
            else:
                response.results.add(prediction=self._record(p, item))
        return response

    def _record(self, p, request):
        self.w.calls.append(f"record:{request.idempotency_key}")
        key = (p.organization_id, request.idempotency_key)
        if request.idempotency_key and key in self.w.idem:
            return self.w.predictions[self.w.idem[key]]
        pred = history_pb2.Prediction()
        pred.CopyFrom(request.prediction)
        pred.id = str(uuid.uuid4())
        pred.organization_id = p.organization_id
        pred.user_id = p.user_id
        pred.created_at.GetCurrentTime()
        pred.has_image = bool(request.image_png)
        pred.has_heatmap = bool(request.heatmap_png)
        self.w.predictions[pred.id] = pred
        self.w.blobs[(pred.id, history_pb2.BLOB_KIND_IMAGE)] = request.image_png
        self.w.blobs[(pred.id, history_pb2.BLOB_KIND_HEATMAP)] = request.heatmap_png
        if request.idempotency_key:
            self.w.idem[key] = pred.id
        return pred

    async def GetPrediction(self, request, context):
        p = await caller(self.w, context)
        pred = self._get(p, request.id)
        if pred is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "prediction not found")
        return pred

    async def ListPredictions(self, request, context):
        p = await caller(self.w, context)
        f = request.filter
        items = [x for x in self.w.predictions.values() if x.organization_id == p.organization_id
                 and (not f.label or x.label == f.label) and (not f.batch_id or x.batch_id == f.batch_id)
                 and (not f.HasField("reviewed") or bool(x.reviewed_label) == f.reviewed)]
        limit = request.page.limit or 50
        start = int(request.page.cursor or 0)
        nxt = str(start + limit) if start + limit < len(items) else ""
        return history_pb2.ListPredictionsResponse(items=items[start:start + limit], next_cursor=nxt)

    async def DeletePrediction(self, request, context):
        p = await caller(self.w, context)
        if self._get(p, request.id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "prediction not found")
        del self.w.predictions[request.id]
        return empty_pb2.Empty()

    async def ReviewPrediction(self, request, context):
        p = await caller(self.w, context)
        pred = self._get(p, request.id)
        if pred is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "prediction not found")
        classes = list(pred.probabilities) or CLASSES  # like history: the classifying version's classes
        if request.label not in classes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"label must be one of {', '.join(classes)}")
        pred.reviewed_label = request.label
        pred.reviewed_by = p.user_id
        pred.review_comment = request.comment
        pred.reviewed_at.GetCurrentTime()
        return pred

    async def GetPredictionBlob(self, request, context):
        p = await caller(self.w, context)
        if self._get(p, request.prediction_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "prediction not found")
        data = self.w.blobs.get((request.prediction_id, request.kind))
        if not data:
            await context.abort(grpc.StatusCode.NOT_FOUND, "not stored")
        return history_pb2.Blob(content_type="image/png", data=data)

    async def CreateBatch(self, request, context):
        p = await caller(self.w, context)
        b = history_pb2.Batch(id=str(uuid.uuid4()), organization_id=p.organization_id, user_id=p.user_id,
                              status=history_pb2.BATCH_STATUS_QUEUED, total=request.total, sample_id=request.sample_id)
        b.created_at.GetCurrentTime()
        self.w.batches[b.id] = b
        return b

    def _batch(self, p, bid):
        b = self.w.batches.get(bid)
        return b if b is not None and b.organization_id == p.organization_id else None

    def _refresh(self, b):
        items = [i for (bid, _), i in self.w.items.items() if bid == b.id]
        b.succeeded = sum(i.status == history_pb2.BATCH_ITEM_STATUS_SUCCEEDED for i in items)
        b.failed = sum(i.status == history_pb2.BATCH_ITEM_STATUS_FAILED for i in items)
        b.label_counts.clear()
        for i in items:
            if i.prediction_id in self.w.predictions:
                lbl = self.w.predictions[i.prediction_id].label
                b.label_counts[lbl] = b.label_counts.get(lbl, 0) + 1
        if b.succeeded + b.failed >= b.total:
            b.status = history_pb2.BATCH_STATUS_COMPLETED
        elif items:
            b.status = history_pb2.BATCH_STATUS_RUNNING
        return b

    async def GetBatch(self, request, context):
        p = await caller(self.w, context)
        b = self._batch(p, request.id)
        if b is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "batch not found")
        return self._refresh(b)

    async def ListBatches(self, request, context):
        p = await caller(self.w, context)
        return history_pb2.ListBatchesResponse(items=[self._refresh(b) for b in self.w.batches.values()
                                                      if b.organization_id == p.organization_id])

    async def RecordBatchItem(self, request, context):
        p = await caller(self.w, context)
        item = request.item
        if self._batch(p, item.batch_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "batch not found")
        key = (item.batch_id, item.index)
        if key not in self.w.items:
            self.w.items[key] = item
        return self.w.items[key]

    async def ListBatchItems(self, request, context):
        p = await caller(self.w, context)
        if self._batch(p, request.batch_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "batch not found")
        items = []
        for (bid, _), i in sorted(self.w.items.items()):
            if bid == request.batch_id:
                full = history_pb2.BatchItem()
                full.CopyFrom(i)
                if i.prediction_id in self.w.predictions:
                    full.prediction.CopyFrom(self.w.predictions[i.prediction_id])
                items.append(full)
        return history_pb2.ListBatchItemsResponse(items=items)

    async def GetStatistics(self, request, context):
        p = await caller(self.w, context)
        preds = [x for x in self.w.predictions.values() if x.organization_id == p.organization_id]
        counts: dict[str, int] = {}
        for x in preds:
            counts[x.label] = counts.get(x.label, 0) + 1
        return history_pb2.Statistics(total=len(preds), label_counts=counts,
                                      mean_confidence=float(np.mean([x.confidence for x in preds])) if preds else 0.0,
                                      daily=[history_pb2.DailyCount(day=time.strftime("%Y-%m-%d"), count=len(preds))])

    async def GetDrift(self, request, context):
        p = await caller(self.w, context)
        return self.w.drift.get(p.organization_id) or history_pb2.DriftReport(
            window_days=7, max_cells=5000, min_cells=200, watch_threshold=0.1, drifting_threshold=0.25)

    async def ListAuditEvents(self, request, context):
        p = await caller(self.w, context)
        return history_pb2.ListAuditEventsResponse(
            items=[e for e in self.w.audit if e.organization_id == p.organization_id])

    async def RecordAuditEvent(self, request, context):
        p = await caller(self.w, context)
        event = history_pb2.AuditEvent(id=str(uuid.uuid4()), organization_id=p.organization_id, user_id=p.user_id,
                                       action=request.action, target_type=request.target_type,
                                       target_id=request.target_id, details_json=request.details_json)
        self.w.audit.append(event)
        return event

    async def ExportReviewedDataset(self, request, context):
        await caller(self.w, context)
        yield history_pb2.DataChunk(data=b"PK\x05\x06" + b"\x00" * 18)


class FakeReports(reports_pb2_grpc.ReportsServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    async def RenderPredictionReport(self, request, context):
        p = await caller(self.w, context)
        pred = self.w.predictions.get(request.prediction_id)
        if pred is None or pred.organization_id != p.organization_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "prediction not found")
        return reports_pb2.Report(pdf=b"%PDF-1.4\n% " + pred.label.encode() + b"\n%%EOF", filename="r.pdf", pages=1)

    async def RenderBatchReport(self, request, context):
        p = await caller(self.w, context)
        b = self.w.batches.get(request.batch_id)
        if b is None or b.organization_id != p.organization_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "batch not found")
        return reports_pb2.Report(pdf=b"%PDF-1.4\n%%EOF", filename="b.pdf", pages=1)


def _now():
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class FakeTraining(AdaptationFakes, training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world
        self.versions = {1: training_pb2.ModelVersion(name="hemovision", version=1,
                                                      status=training_pb2.VERSION_STATUS_ACTIVE,
                                                      metrics={"accuracy": 0.81}),
                         2: training_pb2.ModelVersion(name="hemovision", version=2,
                                                      status=training_pb2.VERSION_STATUS_REGISTERED,
                                                      metrics={"accuracy": 0.86})}
        self.jobs: dict[str, training_pb2.TrainingJob] = {}
        self.rollout: training_pb2.Rollout | None = None
        self.rollout_stats = training_pb2.RolloutStats(available=True)
        world.training = self  # tests reach the rollout state through the world

    async def _caller(self, context):
        return await caller(self.w, context)

    async def ListModelVersions(self, request, context):
        await caller(self.w, context)
        return training_pb2.ListModelVersionsResponse(versions=list(self.versions.values()))

    async def GetModelVersion(self, request, context):
        await caller(self.w, context)
        if request.version not in self.versions:
            await context.abort(grpc.StatusCode.NOT_FOUND, "model version not found")
        return self.versions[request.version]

    async def ActivateModelVersion(self, request, context):
        await caller(self.w, context)
        if request.version not in self.versions:
            await context.abort(grpc.StatusCode.NOT_FOUND, "model version not found")
        for v in self.versions.values():
            v.status = training_pb2.VERSION_STATUS_REGISTERED
        self.versions[request.version].status = training_pb2.VERSION_STATUS_ACTIVE
        return self.versions[request.version]

    async def DeprecateModelVersion(self, request, context):
        await caller(self.w, context)
        v = self.versions.get(request.version)
        if v is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "model version not found")
        if v.status == training_pb2.VERSION_STATUS_ACTIVE and not request.restore:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the active version: activate another one first")
        v.deprecated = not request.restore
        v.deprecation_reason = "" if request.restore else request.reason
        return v

    async def StartRollout(self, request, context):
        p = await caller(self.w, context)
        if request.version not in self.versions:
            await context.abort(grpc.StatusCode.NOT_FOUND, "model version not found")
        if self.rollout is not None and self.rollout.status == training_pb2.ROLLOUT_STATUS_RUNNING:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a rollout is already running")
        active = next(v.version for v in self.versions.values() if v.status == training_pb2.VERSION_STATUS_ACTIVE)
        self.rollout = training_pb2.Rollout(
            id=str(uuid.uuid4()), model_name="hemovision", candidate_version=request.version, baseline_version=active,
            mode=request.mode, canary_percent=request.canary_percent, status=training_pb2.ROLLOUT_STATUS_RUNNING,
            started_by=p.user_id, start_reason=request.reason, started_at=_now())
        return self.rollout

    async def GetRollout(self, request, context):
        await caller(self.w, context)
        if self.rollout is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "model 'hemovision' has no rollout")
        r = training_pb2.Rollout()
        r.CopyFrom(self.rollout)
        if request.with_stats:
            r.stats.CopyFrom(self.rollout_stats)
        return r

    async def PromoteRollout(self, request, context):
        return await self._end_rollout(context, training_pb2.ROLLOUT_STATUS_PROMOTED, request.reason)

    async def AbortRollout(self, request, context):
        return await self._end_rollout(context, training_pb2.ROLLOUT_STATUS_ABORTED, request.reason)

    async def _end_rollout(self, context, status, reason):
        p = await caller(self.w, context)
        if self.rollout is None or self.rollout.status != training_pb2.ROLLOUT_STATUS_RUNNING:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no running rollout")
        if status == training_pb2.ROLLOUT_STATUS_PROMOTED:
            for v in self.versions.values():
                v.status = training_pb2.VERSION_STATUS_REGISTERED
            self.versions[self.rollout.candidate_version].status = training_pb2.VERSION_STATUS_ACTIVE
        self.rollout.status, self.rollout.ended_by, self.rollout.end_reason = status, p.user_id, reason
        self.rollout.ended_at.CopyFrom(_now())
        return self.rollout

    async def StartTrainingJob(self, request, context):
        p = await caller(self.w, context)
        job = training_pb2.TrainingJob(id=str(uuid.uuid4()), status=training_pb2.JOB_STATUS_QUEUED,
                                       config=request.config, total_epochs=request.config.epochs or 3,
                                       created_by=p.user_id)
        self.jobs[job.id] = job
        return job

    async def GetTrainingJob(self, request, context):
        await caller(self.w, context)
        if request.id not in self.jobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        return self.jobs[request.id]

    async def ListTrainingJobs(self, request, context):
        await caller(self.w, context)
        return training_pb2.ListTrainingJobsResponse(jobs=list(self.jobs.values()))

    async def WatchTrainingJob(self, request, context):
        await caller(self.w, context)
        job = self.jobs[request.id]
        for epoch in range(1, job.total_epochs + 1):
            job.status = training_pb2.JOB_STATUS_RUNNING
            job.epoch = epoch
            yield job
        job.status = training_pb2.JOB_STATUS_SUCCEEDED
        yield job

    async def CancelTrainingJob(self, request, context):
        await caller(self.w, context)
        if request.id not in self.jobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        self.jobs[request.id].status = training_pb2.JOB_STATUS_CANCELLED
        return self.jobs[request.id]


NAMES = ["hemovision.auth.v1.AuthService", "hemovision.preprocess.v1.PreprocessService",
         "hemovision.inference.v1.InferenceService", "hemovision.history.v1.HistoryService",
         "hemovision.reports.v1.ReportsService", "hemovision.training.v1.TrainingService"]


async def start_fakes(world: World) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 32 * 1024 * 1024),
                                      ("grpc.max_send_message_length", 32 * 1024 * 1024)])
    auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(world), server)
    preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server(FakePreprocess(world), server)
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(FakeInference(world), server)
    history_pb2_grpc.add_HistoryServiceServicer_to_server(FakeHistory(world), server)
    reports_pb2_grpc.add_ReportsServiceServicer_to_server(FakeReports(world), server)
    training_pb2_grpc.add_TrainingServiceServicer_to_server(FakeTraining(world), server)
    hs = health.aio.HealthServicer()
    for name in ["", *NAMES]:
        await hs.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, hs


def png_bytes(size: int = 32, color=(180, 60, 120)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(size: int = 32) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 100, 50)).save(out, format="JPEG")
    return out.getvalue()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
