"""Admin for bots, campaigns and conversations (with the customer erasure action)."""

from __future__ import annotations

from django.contrib import admin, messages

from analytics.admin.base import OrgScopedAdmin
from analytics.models import (
    Bot,
    Campaign,
    Conversation,
    Organization,
)
from analytics.services.audit import actor_label, request_ip
from analytics.services.customers import customer_erase
from config.admin_site import request_perm_org_ids


@admin.register(Bot)
class BotAdmin(OrgScopedAdmin):
    manage_perm = "bots.manage"
    list_display = ("name", "slug", "organization", "kind", "persona", "channel", "is_active")
    list_filter = ("kind", "channel", "is_active")
    search_fields = ("name", "slug", "persona")
    prepopulated_fields = {"slug": ("name",)}
    list_select_related = ("organization",)


@admin.register(Campaign)
class CampaignAdmin(OrgScopedAdmin):
    manage_perm = "campaigns.manage"
    list_display = ("name", "slug", "organization", "status", "bot")
    list_filter = ("status",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    list_select_related = ("organization", "bot")


@admin.register(Conversation)
class ConversationAdmin(OrgScopedAdmin):
    manage_perm = "bots.manage"
    delete_perm = "org.delete"  # deleting customers' data is an owner's
    list_display = ("external_id", "customer", "bot", "channel", "status", "started_at", "csat")
    list_filter = ("status", "channel", "handoff")
    search_fields = ("external_id", "customer")
    date_hierarchy = "started_at"
    list_select_related = ("bot",)
    raw_id_fields = ()
    actions = ("erase_customers",)

    def has_erase_permission(self, request):
        return request.user.is_superuser or bool(request_perm_org_ids(request, "customers.erase"))

    @admin.action(
        description="Erase the customers of the selected conversations (all their data)",
        permissions=["erase"],
    )
    def erase_customers(self, request, queryset):
        """One erasure per (org, customer) of the selection, as the API's erase does it: every
        conversation, message and activity of the customer goes, not only the ones selected."""
        if not request.user.is_superuser:
            queryset = queryset.filter(
                organization_id__in=request_perm_org_ids(request, "customers.erase")
            )
        pairs = set(
            queryset.exclude(customer="").values_list("organization_id", "customer").distinct()
        )
        orgs = Organization.objects.in_bulk({org_id for org_id, _ in pairs})
        erased = {"conversations": 0, "messages": 0, "activities": 0}
        for org_id, customer in sorted(pairs):
            receipt = customer_erase(
                org=orgs[org_id],
                customer=customer,
                actor_label=actor_label(request.user),
                actor=request.user,
                ip=request_ip(request),
            )
            for kind in erased:
                erased[kind] += receipt.counts.get(kind) or 0
        if not pairs:
            self.message_user(
                request, "None of the selected conversations names a customer.", messages.WARNING
            )
            return
        self.message_user(
            request,
            f"Erased {len(pairs)} customer(s): {erased['conversations']} conversations, "
            f"{erased['messages']} messages, {erased['activities']} activities. "
            "The audit trail is under Customer erasures.",
        )
