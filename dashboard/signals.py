"""Receivers of the dashboard layer, connected in DashboardConfig.ready(): where access ends (each
names whose sockets to close, see dashboard.revocation) and where an org's alerts changed (the
banner and stream events are published, see dashboard.broadcast)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.models import Session
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save, pre_save

from analytics.models import ApiKey, Membership
from analytics.services.alerts.events import alert_changed
from dashboard.broadcast import alerts_publish
from dashboard.revocation import (
    CLOSE_AUTH_ENDED,
    CLOSE_NOT_ALLOWED,
    access_end,
    api_key_group,
    session_tag,
    user_group,
)


def _changed(update_fields, *names: str) -> bool:
    return update_fields is None or any(name in update_fields for name in names)


def _deleted_with_user(origin) -> bool:
    """Whether a row goes because its user is deleted (that user's own message says 4401)."""
    User = get_user_model()
    if isinstance(origin, QuerySet):
        return origin.model is User
    return isinstance(origin, User)


def logged_out(sender, request, user, **kwargs):
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        access_end(
            group=user_group(user.pk), code=CLOSE_AUTH_ENDED, session=session_tag(session_key)
        )


def session_deleted(sender, instance, **kwargs):
    """A session deleted in admin, by `clearsessions` or by logout's flush."""
    try:
        user_id = instance.get_decoded().get("_auth_user_id")
    except Exception:  # a session of another engine or secret: nobody's sockets depend on it
        return
    if user_id is not None:
        access_end(
            group=user_group(user_id),
            code=CLOSE_AUTH_ENDED,
            session=session_tag(instance.session_key),
        )


def user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created:
        return
    if not instance.is_active and _changed(update_fields, "is_active"):
        access_end(group=user_group(instance.pk), code=CLOSE_AUTH_ENDED)
    elif _changed(update_fields, "password") and getattr(instance, "_password", None) is not None:
        # set_password() was called: sessions signed in with the old password no longer are.
        access_end(group=user_group(instance.pk), code=CLOSE_AUTH_ENDED, recheck=True)


def user_deleted(sender, instance, **kwargs):
    access_end(group=user_group(instance.pk), code=CLOSE_AUTH_ENDED)


def membership_before_save(sender, instance, **kwargs):
    if instance.pk is not None:
        instance._stored = (
            Membership.objects.filter(pk=instance.pk)
            .values_list("organization_id", "user_id", "role")
            .first()
        )


def membership_saved(sender, instance, created, **kwargs):
    stored = getattr(instance, "_stored", None)
    if created or stored is None:
        return
    org_id, user_id, role = stored
    if (org_id, user_id) != (instance.organization_id, instance.user_id):
        access_end(group=user_group(user_id), code=CLOSE_NOT_ALLOWED, org_id=org_id)
    elif role != instance.role:
        # Every role may watch its org's dashboard today; each socket checks again, so a role
        # that loses that right loses its sockets (4403) and the others keep theirs.
        access_end(group=user_group(user_id), code=CLOSE_NOT_ALLOWED, org_id=org_id, recheck=True)


def membership_deleted(sender, instance, origin=None, **kwargs):
    if not _deleted_with_user(origin):
        access_end(
            group=user_group(instance.user_id),
            code=CLOSE_NOT_ALLOWED,
            org_id=instance.organization_id,
        )


def api_key_saved(sender, instance, created, update_fields=None, **kwargs):
    if created or not _changed(update_fields, "revoked_at", "scopes"):
        return
    if not instance.is_active:
        access_end(group=api_key_group(instance.pk), code=CLOSE_AUTH_ENDED)
    elif not instance.has_scope("read"):
        access_end(group=api_key_group(instance.pk), code=CLOSE_NOT_ALLOWED)


def api_key_deleted(sender, instance, **kwargs):
    access_end(group=api_key_group(instance.pk), code=CLOSE_AUTH_ENDED)


def alerts_changed(sender, org, changed, **kwargs):
    alerts_publish(org=org, changed=changed)


def connect() -> None:
    User = get_user_model()
    uid = "dashboard.revocation."
    user_logged_out.connect(logged_out, dispatch_uid=uid + "logout")
    post_delete.connect(session_deleted, sender=Session, dispatch_uid=uid + "session")
    post_save.connect(user_saved, sender=User, dispatch_uid=uid + "user-save")
    post_delete.connect(user_deleted, sender=User, dispatch_uid=uid + "user-delete")
    pre_save.connect(membership_before_save, sender=Membership, dispatch_uid=uid + "m-pre")
    post_save.connect(membership_saved, sender=Membership, dispatch_uid=uid + "m-save")
    post_delete.connect(membership_deleted, sender=Membership, dispatch_uid=uid + "m-delete")
    post_save.connect(api_key_saved, sender=ApiKey, dispatch_uid=uid + "key-save")
    post_delete.connect(api_key_deleted, sender=ApiKey, dispatch_uid=uid + "key-delete")
    alert_changed.connect(alerts_changed, dispatch_uid="dashboard.broadcast.alerts")
