"""One customer's data over the API: erasure (`POST /api/v1/customers/erase`) and access
(`GET /api/v1/customers/export?customer=`). Personal data either way, so an API key needs the
`admin` scope, and a signed-in user a role holding `customers.erase` / `customers.export`
(admin and owner; `?org=<slug>` names the org). Everything goes through analytics/services/
customers.py, scoped to the key's or the member's org."""

from __future__ import annotations

from collections.abc import Iterator

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, renderers, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.auth import ApiKeyAuthentication, ApiKeyRateThrottle, session_org
from analytics.api.read import BAD, ORG_PARAM
from analytics.api.read_serializers import ErrorSerializer
from analytics.models import ApiKey
from analytics.services.audit import actor_label, audit_request, request_actor, request_ip
from analytics.services.customers import (
    KEPT_KINDS,
    KINDS,
    MAX_CUSTOMER_LENGTH,
    customer_counts,
    customer_erase,
    customer_export_rows,
)
from analytics.services.export import CHUNK_BYTES, JsonStreamingResponse

SCOPE = ApiKey.Scope.ADMIN
ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No or an unknown API key"),
    403: OpenApiResponse(
        ErrorSerializer, description="A key without the admin scope, or a role below admin"
    ),
    404: OpenApiResponse(ErrorSerializer, description="Not a member of this organization"),
}


class CustomerSerializer(serializers.Serializer):
    customer = serializers.CharField(
        max_length=MAX_CUSTOMER_LENGTH,
        help_text="The customer's identifier as the events carry it (e.g. +27 82 555 0101).",
    )


class ReceiptSerializer(serializers.Serializer):
    erasure_id = serializers.IntegerField()
    erased_at = serializers.DateTimeField(
        help_text="The cut-off: everything accepted before it is erased"
    )
    covers = serializers.CharField(help_text="What the erasure covers (data received up to then)")
    counts = serializers.DictField(
        child=serializers.IntegerField(allow_null=True),
        help_text=f"Rows removed per kind: {', '.join(KINDS)} (null: could not be reached)",
    )
    previous_erasures = serializers.IntegerField(
        help_text="Earlier erasures of the same identifier in this organization"
    )
    kept_after = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=(
            f"Rows still held per kind ({', '.join(KEPT_KINDS)}) once the erasure committed: "
            "received after the cut-off (while it ran), so kept"
        ),
    )
    notes = serializers.ListField(child=serializers.CharField())


class MessageExportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    direction = serializers.CharField()
    text = serializers.CharField()
    created_at = serializers.DateTimeField()
    response_time_ms = serializers.IntegerField(allow_null=True)
    outcome = serializers.CharField()
    tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6)
    kb_hit = serializers.BooleanField(allow_null=True)


class ConversationExportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    bot = serializers.CharField()
    campaign = serializers.CharField()
    customer = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    handoff = serializers.BooleanField()
    csat = serializers.IntegerField(allow_null=True)
    call_outcome = serializers.CharField()
    metrics = serializers.DictField(allow_null=True, help_text="The conversation's metrics")
    messages = MessageExportSerializer(many=True)


class ActivityExportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    bot = serializers.CharField()
    kind = serializers.CharField()
    description = serializers.CharField()
    customer = serializers.CharField()
    value = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    created_at = serializers.DateTimeField()


class CustomerExportSerializer(serializers.Serializer):
    customer = serializers.CharField()
    organization = serializers.CharField()
    generated_at = serializers.DateTimeField()
    counts = serializers.DictField(child=serializers.IntegerField())
    conversations = ConversationExportSerializer(many=True)
    activities = ActivityExportSerializer(many=True)


class CustomerDataAccess(permissions.BasePermission):
    """An `admin`-scoped API key, or a signed-in user (the role is checked with the org)."""

    def has_permission(self, request, view):
        if isinstance(request.auth, ApiKey):
            if not request.auth.has_scope(SCOPE):
                raise exceptions.PermissionDenied(f"This API key lacks the '{SCOPE}' scope.")
            return True
        if request.user is not None and request.user.is_authenticated:
            return True
        raise exceptions.NotAuthenticated(f"An API key with the '{SCOPE}' scope is required.")


class _CustomerApi(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [CustomerDataAccess]
    throttle_classes = [ApiKeyRateThrottle]
    renderer_classes = [renderers.JSONRenderer]
    session_perm = ""
    org = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, ApiKey):
            self.org = request.auth.organization
        else:
            self.org = session_org(request, self.session_perm)
        request.org = self.org

    @staticmethod
    def customer(data) -> str:
        serializer = CustomerSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data["customer"]


class CustomerEraseApi(_CustomerApi):
    """Erase one customer's data; an unknown customer gets a receipt with zero counts."""

    session_perm = "customers.erase"

    @extend_schema(
        operation_id="customers_erase",
        parameters=[ORG_PARAM],
        request=CustomerSerializer,
        responses={200: ReceiptSerializer, **BAD, **ERRORS},
    )
    def post(self, request):
        customer = self.customer(request.data)
        actor = request_actor(request)
        try:
            receipt = customer_erase(
                org=self.org,
                customer=customer,
                actor_label=actor_label(actor),
                actor=None if isinstance(actor, ApiKey) else actor,
                api_key=actor if isinstance(actor, ApiKey) else None,
                ip=request_ip(request),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return Response(
            {
                "erasure_id": receipt.erasure_id,
                "erased_at": receipt.erased_at,
                "covers": receipt.covers,
                "counts": receipt.counts,
                "previous_erasures": receipt.previous_erasures,
                "kept_after": receipt.kept_after,
                "notes": receipt.notes,
            }
        )


def _shape(serializer_class, *, without=()):
    """A row -> the dict `serializer_class` would give for it, field by field (no per-row
    serializer: 100k messages are rendered in a second, not in ten)."""
    fields = [(n, f) for n, f in serializer_class().fields.items() if n not in without]
    return lambda row: {
        n: None if (v := row[n]) is None else f.to_representation(v) for n, f in fields
    }


def export_json_chunks(parts) -> Iterator[bytes]:
    """The document CustomerExportSerializer describes, rendered as DRF would render it, from
    the parts of customer_export_rows, in chunks of about CHUNK_BYTES."""
    _, head = next(parts)
    render = renderers.JSONRenderer().render
    conversation = _shape(ConversationExportSerializer, without=("messages",))
    message, activity = _shape(MessageExportSerializer), _shape(ActivityExportSerializer)
    out = bytearray(render(_shape(CustomerExportSerializer, without=_LISTS)(head))[:-1])
    out.extend(b',"conversations":[')
    rows: list[dict] = []  # rendered, not yet written items of the open list
    state = {"listed": False, "conversations": 0, "activities": False}

    def flush() -> None:
        # The items of one list, comma-joined: rendered together, an array without brackets.
        if rows:
            out.extend(b"," if state["listed"] else b"")
            out.extend(render(rows)[1:-1])
            state["listed"] = True
            rows.clear()

    def close_conversations() -> None:
        flush()
        out.extend((b"]}" if state["conversations"] else b"") + b'],"activities":[')
        state["activities"], state["listed"] = True, False

    for kind, row in parts:
        if kind == "message":
            rows.append(message(row))
        elif kind == "conversation":
            flush()
            out.extend(b"]}," if state["conversations"] else b"")
            out.extend(render(conversation(row))[:-1] + b',"messages":[')
            state["conversations"] += 1
            state["listed"] = False
        else:
            if not state["activities"]:
                close_conversations()
            rows.append(activity(row))
        if len(rows) >= RENDER_ROWS:
            flush()
        if len(out) >= CHUNK_BYTES:
            yield bytes(out)
            out.clear()
    if not state["activities"]:
        close_conversations()
    flush()
    out.extend(b"]}")
    yield bytes(out)


_LISTS = ("conversations", "activities")
RENDER_ROWS = 500


class CustomerExportApi(_CustomerApi):
    """Everything held about one customer: conversations with messages and metrics, activities.
    Streamed: the document is written as the rows are read, never whole in memory."""

    session_perm = "customers.export"

    @extend_schema(
        operation_id="customers_export",
        parameters=[CustomerSerializer, ORG_PARAM],
        responses={200: CustomerExportSerializer, **BAD, **ERRORS},
    )
    def get(self, request):
        customer = self.customer(request.query_params)
        try:
            parts = customer_export_rows(org=self.org, customer=customer)
            counts = customer_counts(org=self.org, customer=customer)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        # Who read whose data, without the customer: the counts say how much (as the export
        # begins; the document's own counts are read in the snapshot its rows are read in).
        audit_request(request, action="customer.exported", details=counts)
        return JsonStreamingResponse(export_json_chunks(parts))
