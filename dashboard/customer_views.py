"""Erase a customer (`/o/<org>/customers/erase/`): an org admin names the customer, sees how much
the org holds about them, confirms, and gets the receipt. The role matrix decides
(`customers.erase`); the work is analytics/services/customers.py's."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from analytics.services.audit import actor_label, request_ip
from analytics.services.customers import (
    MAX_CUSTOMER_LENGTH,
    customer_clean,
    customer_counts,
    customer_erase,
    customer_erasures,
)
from dashboard.views import org_view


class CustomerForm(forms.Form):
    customer = forms.CharField(
        max_length=MAX_CUSTOMER_LENGTH,
        strip=False,
        label="Customer identifier",
        help_text="Exactly as your bots send it in the events' customer field, e.g. +27 82 555 0101.",
    )

    def clean_customer(self):
        try:
            return customer_clean(self.cleaned_data["customer"])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["customer"]) from None


@org_view(perm="customers.erase")
@require_http_methods(["GET", "POST"])
def customer_erase_page(request, org):
    """GET: the form. POST `action=preview`: what the org holds, and a confirm button.
    POST `action=erase`: erase and show the receipt."""
    context = {"org": org, "form": CustomerForm(), "erasures": customer_erasures(org=org)}
    if request.method == "GET":
        return render(request, "dashboard/customer_erase.html", context)
    form = CustomerForm(request.POST)
    context["form"] = form
    if not form.is_valid():
        return render(request, "dashboard/customer_erase.html", context, status=400)
    customer = form.cleaned_data["customer"]
    if request.POST.get("action") != "erase":
        context["preview"] = customer_counts(org=org, customer=customer)
        context["customer"] = customer
        return render(request, "dashboard/customer_erase.html", context)
    receipt = customer_erase(
        org=org,
        customer=customer,
        actor_label=actor_label(request.user),
        actor=request.user,
        ip=request_ip(request),
    )
    context["receipt"] = receipt
    context["form"] = CustomerForm()
    context["erasures"] = customer_erasures(org=org)
    return render(request, "dashboard/customer_erase.html", context)
