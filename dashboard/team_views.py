"""Team (`/o/<org>/team/`: members, roles, invitations), the audit log (`/o/<org>/audit/`) and
the invitation link (`/invite/<token>/`). Writes go through analytics/services (members,
invitations); the role matrix decides, the views only show what it allows."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analytics.models import AuditEvent, Invitation, Membership, Role
from analytics.roles import RANK, can_manage_member, grantable_roles
from analytics.services.audit import ACTIONS, audit_request, request_ip
from analytics.services.invitations import (
    email_has_account,
    invitation_accept,
    invitation_create,
    invitation_get,
    invitation_problem,
    invitation_revoke,
    invitations_pending,
)
from analytics.services.members import member_actor_role, membership_remove, membership_set_role
from dashboard.views import org_view

AUDIT_PAGE_SIZE = 50


def _errors(exc: ValidationError) -> list[str]:
    return exc.messages


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    """A service's ValidationError onto the form: field errors on their fields, the rest on top."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


# --- team --------------------------------------------------------------------------------------


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=())

    def __init__(self, *args, roles: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(r, Role(r).label) for r in roles]
        self.fields["role"].initial = Role.VIEWER


def _team_context(request, org, *, invite_form=None, errors=()) -> dict:
    actor_role = member_actor_role(request.user, org)
    offered = grantable_roles(actor_role)
    rank = Case(
        *[When(role=r, then=Value(-n)) for r, n in RANK.items()], output_field=IntegerField()
    )
    members = (
        Membership.objects.for_org(org)
        .select_related("user")
        .annotate(rank=rank)
        .order_by("rank", "user__username")
    )
    rows = [
        {
            "membership": m,
            "is_me": m.user_id == request.user.pk,
            "can_change": can_manage_member(actor_role, m.role),
            "roles": [(r, Role(r).label) for r in offered],
        }
        for m in members
    ]
    invitations = [
        {"invitation": i, "can_revoke": can_manage_member(actor_role, i.role)}
        for i in invitations_pending(org=org)
    ]
    return {
        "org": org,
        "rows": rows,
        "invitations": invitations,
        "invite_form": invite_form or InviteForm(roles=offered),
        "errors": errors,
        "my_role": actor_role,
    }


@org_view(perm="members.manage")
@require_http_methods(["GET", "POST"])
def team(request, org):
    """The members, pending invitations and the invite form (a POST sends an invitation)."""
    if request.method == "GET":
        return render(request, "dashboard/team.html", _team_context(request, org))
    # Every role validates here; the service refuses those the inviter may not give.
    form = InviteForm(request.POST, roles=list(RANK))
    if form.is_valid():
        try:
            sent = invitation_create(
                org=org,
                actor=request.user,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                request_ip=request_ip(request),
                base_url=request.build_absolute_uri("/"),
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(
                request,
                f"Invitation sent to {sent.invitation.email} as "
                f"{sent.invitation.get_role_display().lower()}.",
            )
            return redirect("dashboard:team", org_slug=org.slug)
    offered = grantable_roles(member_actor_role(request.user, org))
    form.fields["role"].choices = [(r, Role(r).label) for r in offered]
    return render(
        request, "dashboard/team.html", _team_context(request, org, invite_form=form), status=400
    )


@org_view(perm="members.manage")
@require_POST
def team_member(request, org, pk):
    """`action=role` with `role=<role>`, or `action=remove`."""
    membership = Membership.objects.for_org(org).select_related("user").filter(pk=pk).first()
    if membership is None:
        raise Http404("No such member.")
    username, before = membership.user.get_username(), membership.role
    action = request.POST.get("action", "")
    try:
        if action == "role":
            role = request.POST.get("role", "")
            membership_set_role(actor=request.user, membership=membership, role=role)
            if role != before:
                audit_request(
                    request,
                    action="member.role_changed",
                    target=username,
                    details={"from": before, "to": role},
                )
                messages.success(request, f"{username} is now {Role(role).label.lower()}.")
        elif action == "remove":
            membership_remove(actor=request.user, membership=membership)
            audit_request(
                request, action="member.removed", target=username, details={"role": before}
            )
            if membership.user_id == request.user.pk:
                messages.success(request, f"You left {org.name}.")
                return redirect("home")
            messages.success(request, f"{username} was removed from {org.name}.")
        else:
            raise ValidationError("Unknown action.")
    except ValidationError as exc:
        return render(
            request,
            "dashboard/team.html",
            _team_context(request, org, errors=_errors(exc)),
            status=400,
        )
    return redirect("dashboard:team", org_slug=org.slug)


@org_view(perm="members.manage")
@require_POST
def team_invitation_revoke(request, org, pk):
    invitation = (
        Invitation.objects.for_org(org).select_related("organization").filter(pk=pk).first()
    )
    if invitation is None:
        raise Http404("No such invitation.")
    try:
        invitation_revoke(actor=request.user, invitation=invitation, ip=request_ip(request))
    except ValidationError as exc:
        return render(
            request,
            "dashboard/team.html",
            _team_context(request, org, errors=_errors(exc)),
            status=400,
        )
    messages.success(request, f"Invitation to {invitation.email} withdrawn.")
    return redirect("dashboard:team", org_slug=org.slug)


# --- the invitation link -----------------------------------------------------------------------


class JoinForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=128)
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=128)

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


@never_cache
def invite(request, token):
    """The invitee's page: set a username and password (or sign in), then land in the org."""
    invitation = invitation_get(token)
    problem = invitation_problem(invitation)
    if problem:
        return render(
            request,
            "dashboard/invite.html",
            {"problem": problem},
            status=404 if invitation is None else 410,
        )
    org = invitation.organization
    context = {"invitation": invitation, "invite_org": org, "errors": []}
    signed_in = request.user.is_authenticated
    if not signed_in and email_has_account(invitation.email):
        context["sign_in_url"] = f"{reverse('login')}?next={request.path}"
        return render(request, "dashboard/invite.html", context)
    if signed_in and request.user.email.lower() != invitation.email.lower():
        context["wrong_account"] = True
        return render(request, "dashboard/invite.html", context, status=403)
    form = None if signed_in else JoinForm(request.POST or None)
    context["form"] = form
    if request.method != "POST":
        return render(request, "dashboard/invite.html", context)
    if form is not None and not form.is_valid():
        return render(request, "dashboard/invite.html", context, status=400)
    try:
        if signed_in:
            invitation_accept(token=token, user=request.user, ip=request_ip(request))
        else:
            membership = invitation_accept(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                ip=request_ip(request),
            )
            login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
    except ValidationError as exc:
        if form is not None:
            _add_errors(form, exc)
        else:
            context["errors"] = exc.messages
        return render(request, "dashboard/invite.html", context, status=400)
    role = invitation.get_role_display().lower()
    messages.success(request, f"Welcome to {org.name}. You joined as {role}.")
    return redirect("dashboard:org_dashboard", org_slug=org.slug)


# --- audit log ---------------------------------------------------------------------------------


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=list(ACTIONS.items()), empty_label="Any action")
    actor = django_filters.ChoiceFilter(field_name="actor_label", empty_label="Anyone")
    start = django_filters.DateFilter(method="filter_start", label="From")
    end = django_filters.DateFilter(method="filter_end", label="To")

    class Meta:
        model = AuditEvent
        fields = ("action", "actor", "start", "end")

    def __init__(self, data=None, *, org, **kwargs):
        self.org = org
        super().__init__(data, queryset=AuditEvent.objects.for_org(org), **kwargs)
        labels = (
            AuditEvent.objects.for_org(org)
            .order_by("actor_label")
            .values_list("actor_label", flat=True)
            .distinct()[:500]
        )
        self.filters["actor"].extra["choices"] = [(label, label) for label in labels]

    def _day_start(self, day):
        return datetime.combine(day, time.min, tzinfo=self.org.tz)

    def filter_start(self, queryset, name, value):
        return queryset.filter(created_at__gte=self._day_start(value))

    def filter_end(self, queryset, name, value):
        return queryset.filter(created_at__lt=self._day_start(value + timedelta(days=1)))


@org_view(perm="audit.view")
@require_GET
def audit(request, org):
    """The org's audit log, newest first, filtered by action, actor and day range."""
    filters = AuditEventFilter(request.GET, org=org)
    valid = filters.is_valid()
    events = filters.qs.order_by("-created_at", "-id") if valid else AuditEvent.objects.none()
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboard/audit.html",
        {
            "org": org,
            "filters": filters,
            "form": filters.form,
            "page": page,
            "query": query.urlencode(),
            "actions": ACTIONS,
        },
        status=200 if valid else 400,
    )
