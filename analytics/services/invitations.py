"""Email invitations: an admin or owner invites someone with a role; the link works once, for 7 days.

Only a SHA-256 hash of the one-time token is stored (the token carries 256 bits, so a fast hash
is enough). The membership goes to the account whose email was invited: a new account made from
the link, or the existing account with that email once signed in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from analytics.models import Invitation, Membership, Organization, Role
from analytics.roles import can_manage_member
from analytics.services.audit import actor_label, audit_record
from analytics.services.members import member_actor_role, membership_check_grant


@dataclass(frozen=True)
class SentInvitation:
    invitation: Invitation
    url: str  # the one-time link; it exists only in the email (and here, for the caller)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_url(token: str, *, base_url: str = "") -> str:
    """The absolute link: SITE_URL when set, else the host the inviter used."""
    base = settings.SITE_URL or base_url.rstrip("/") or "http://localhost:8000"
    return f"{base}/invite/{token}/"


def _email_of(raw: str) -> str:
    email = (raw or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def invitation_create(
    *,
    org: Organization,
    actor,
    email: str,
    role: str,
    request_ip: str | None = None,
    base_url: str = "",
) -> SentInvitation:
    """Invite `email` to `org` as `role` (one the actor may grant) and email them the link; a
    pending invitation to the same address is replaced."""
    email = _email_of(email)
    membership_check_grant(actor=actor, organization=org, role=role)
    if Membership.objects.for_org(org).filter(user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of {org.name}."})
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.for_org(org).filter(
            email__iexact=email, accepted_at=None, revoked_at=None
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            organization=org,
            email=email,
            role=role,
            token_hash=_hash(token),
            invited_by=actor if getattr(actor, "pk", None) else None,
            created_at=now,
            expires_at=now + timedelta(days=settings.INVITATION_TTL_DAYS),
        )
        audit_record(
            org=org,
            actor=actor,
            action="member.invited",
            target=email,
            details={"role": role},
            ip=request_ip,
        )
    url = invitation_url(token, base_url=base_url)
    send_mail(
        subject=f"{actor_label(actor)} invited you to {org.name} on BotFlow Analytics",
        message=(
            f"{actor_label(actor)} invited you to join {org.name} on BotFlow Analytics "
            f"as {Role(role).label.lower()}.\n\n"
            f"Accept the invitation: {url}\n\n"
            f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. "
            "If you did not expect this email, ignore it."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[email],
    )
    return SentInvitation(invitation=invitation, url=url)


def invitation_get(token: str) -> Invitation | None:
    """The invitation of this token (in any state), or None."""
    if not token or len(token) > 200:
        return None
    return (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_hash=_hash(token))
        .first()
    )


def invitation_problem(invitation: Invitation | None) -> str:
    """Why the link can no longer be used; empty while it can."""
    if invitation is None:
        return "This invitation link is not valid. Ask for a new invitation."
    if invitation.accepted_at is not None:
        return "This invitation has already been used. Each link works once; ask for a new one."
    if invitation.revoked_at is not None:
        return "This invitation was withdrawn. Ask an admin of the organization for a new one."
    if invitation.expires_at <= timezone.now():
        days = settings.INVITATION_TTL_DAYS
        return f"This invitation has expired (links work for {days} days). Ask for a new one."
    return ""


def invitation_accept(
    *,
    token: str,
    user=None,
    username: str = "",
    password: str = "",
    ip: str | None = None,
) -> Membership:
    """Join the invitation's org with its role: as `user` (whose email must be the invited one),
    or as a new account `username`/`password` with the invited email. The link works once."""
    with transaction.atomic():
        found = invitation_get(token)
        invitation = (
            Invitation.objects.select_for_update().select_related("organization").get(pk=found.pk)
            if found is not None
            else None
        )
        problem = invitation_problem(invitation)
        if problem:
            raise ValidationError(problem)
        org = invitation.organization
        if user is None:
            if email_has_account(invitation.email):
                raise ValidationError(
                    f"{invitation.email} already has an account: sign in to accept."
                )
            user = _user_create(username=username, password=password, email=invitation.email)
        elif user.email.lower() != invitation.email.lower():
            raise ValidationError(
                f"This invitation is for {invitation.email}; you are signed in as "
                f"{user.get_username()}. Sign out and open the link again."
            )
        elif Membership.objects.for_org(org).filter(user=user).exists():
            raise ValidationError(f"You are already a member of {org.name}.")
        membership = Membership.objects.create(organization=org, user=user, role=invitation.role)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            org=org,
            actor=user,
            action="member.joined",
            target=user.get_username(),
            details={
                "role": invitation.role,
                "email": invitation.email,
                "invited_by": actor_label(invitation.invited_by),
            },
            ip=ip,
        )
    return membership


def email_has_account(email: str) -> bool:
    return get_user_model().objects.filter(email__iexact=email, is_active=True).exists()


def _user_create(*, username: str, password: str, email: str):
    User = get_user_model()
    username = (username or "").strip()
    errors: dict[str, list[str]] = {}
    try:
        User._meta.get_field("username").run_validators(username)
        if not username:
            raise ValidationError("Choose a username.")
    except ValidationError as exc:
        errors["username"] = exc.messages
    else:
        if User.objects.filter(username__iexact=username).exists():
            errors["username"] = ["That username is taken; choose another."]
    user = User(username=username, email=email)
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        errors["password"] = exc.messages
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    user.save()
    return user


def invitation_revoke(*, actor, invitation: Invitation, ip: str | None = None) -> Invitation:
    """Withdraw a pending invitation (admins: below owner; owners: any)."""
    org = invitation.organization
    if not can_manage_member(member_actor_role(actor, org), invitation.role):
        raise ValidationError(f"Your role cannot withdraw an invitation as {invitation.role}.")
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            org=org,
            actor=actor,
            action="invitation.revoked",
            target=invitation.email,
            details={"role": invitation.role},
            ip=ip,
        )
    return invitation


def invitations_pending(*, org: Organization):
    """The org's invitations that can still be accepted, newest first."""
    return (
        Invitation.objects.for_org(org)
        .filter(accepted_at=None, revoked_at=None, expires_at__gt=timezone.now())
        .select_related("invited_by")
        .order_by("-created_at")
    )
