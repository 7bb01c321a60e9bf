"""Tenancy: the organization, the base of every tenant-owned row, members, invitations and
the audit log. Every tenant-owned row carries a non-null organization; indexes lead with it."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now


def _validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/Berlin).")


#: raw event retention bounds and default (days)
RAW_RETENTION_MIN, RAW_RETENTION_MAX, RAW_RETENTION_DEFAULT = 30, 730, 395


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[_validate_timezone])
    created_at = models.DateTimeField(default=now)
    # Set when events were stored while Redis was unreachable: the live state is rebuilt from
    # PostgreSQL for the recent window once Redis answers again.
    live_stale_since = models.DateTimeField(null=True, blank=True, editable=False)
    # How long data is kept (issue 14): raw events leave with their month's partition, or in
    # small per-day batches where this org keeps less than the longest retention; rollups keep
    # the anonymous aggregates far longer.
    raw_retention_days = models.PositiveSmallIntegerField(
        "raw event retention (days)",
        default=RAW_RETENTION_DEFAULT,
        validators=[MinValueValidator(RAW_RETENTION_MIN), MaxValueValidator(RAW_RETENTION_MAX)],
        help_text="Days raw events (conversations, messages, activities) are kept: 30-730.",
    )
    rollup_retention_days = models.PositiveSmallIntegerField(
        "rollup retention (days)",
        default=1825,
        validators=[MinValueValidator(365), MaxValueValidator(3650)],
        help_text="Days hourly and daily rollups are kept: 365-3650 (5 years by default).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class OrgQuerySet(models.QuerySet):
    """The one way to read tenant rows: `Model.objects.for_org(org)`."""

    def for_org(self, org: Organization | int) -> OrgQuerySet:
        org_id = org if isinstance(org, int) else org.pk
        if org_id is None:
            raise ValueError("for_org() needs a saved organization")
        return self.filter(organization_id=org_id)


class TenantModel(models.Model):
    """Base of every tenant-owned row; related tenant rows must belong to the same org."""

    # No index of its own: every tenant table has a composite index that leads with it.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )

    objects = OrgQuerySet.as_manager()

    # Foreign keys (to tenant models) that must point into this row's organization.
    same_org_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def validate_constraints(self, exclude=None):
        # A clash on (organization, x) is reported on field x, where the user can fix it.
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as exc:
            errors = exc.update_error_dict({})
            kept = []
            for error in errors.pop(NON_FIELD_ERRORS, []):
                check = (
                    (error.params or {}).get("unique_check", ())
                    if error.code in ("unique", "unique_together")
                    else ()
                )
                others = [name for name in check if name != "organization"]
                if "organization" in check and len(others) == 1:
                    field = self._meta.get_field(others[0])
                    message = (
                        f"{str(self._meta.verbose_name).capitalize()} with this "
                        f"{field.verbose_name} already exists in this organization."
                    )
                    errors.setdefault(field.name, []).append(
                        ValidationError(message, code="unique")
                    )
                else:
                    kept.append(error)
            if kept:
                errors[NON_FIELD_ERRORS] = kept
            raise ValidationError(errors) from None

    def clean(self) -> None:
        super().clean()
        errors = {}
        for field in self.same_org_fields:
            related = getattr(self, field, None)
            if (
                related is not None
                and self.organization_id is not None
                and related.organization_id != self.organization_id
            ):
                errors[field] = f"This {field} belongs to another organization."
        if errors:
            raise ValidationError(errors)


def unenforced_fk(model, related_name: str = "+") -> models.ForeignKey:
    """A foreign key Django follows and cascades, but PostgreSQL neither checks nor indexes."""
    return models.ForeignKey(
        model,
        on_delete=models.CASCADE,
        related_name=related_name,
        db_index=False,
        db_constraint=False,
    )


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    ANALYST = "analyst", "Analyst"
    VIEWER = "viewer", "Viewer"


ADMIN_ROLES = (Role.OWNER, Role.ADMIN)


class Membership(TenantModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


# --- team and audit log (issue 11) ------------------------------------------------------------


class Invitation(TenantModel):
    """An email invitation to join an org with a role; only a hash of its one-time token is kept."""

    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "email"], name="invitation_org_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.role})"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now()


class AuditEvent(TenantModel):
    """Who did what to the org, when and from where. Labels are copied so the entry outlives
    the user, key or rule it names; details never hold customer data."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="auditevent_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"


# --- customer erasure (issue 14) ---------------------------------------------------------------


class CustomerErasure(TenantModel):
    """One erasure of a customer's data: who asked, when and how much went. Never the identifier:
    `fingerprint` is an HMAC of it (keyed by SECRET_KEY and the org), so a repeated request is
    recognised, while the identifier cannot be read back from this row."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    fingerprint = models.CharField(max_length=64, editable=False)
    counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "fingerprint"], name="erasure_org_fingerprint"),
            models.Index(fields=["organization", "-created_at"], name="erasure_org_created"),
        ]

    def __str__(self) -> str:
        return f"erasure {self.pk} by {self.actor_label}"
