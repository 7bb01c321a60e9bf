"""The conversation explorer and its CSV exports (direct downloads and background jobs).

Every view is wrapped in org_view (404 for anyone outside the org); a job is looked up in the org
only, so another org's job id is a 404 like one that does not exist.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import FileResponse, Http404, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from analytics.filters import (
    DEFAULT_PERIOD,
    PERIOD_CHOICES,
    SORTS,
    conversation_filter,
    serial_plans,
)
from analytics.services.audit import audit_request, export_details
from analytics.services.export import (
    CsvStreamingResponse,
    conversations_csv,
    count_capped,
    export_filename,
    export_job_get,
    export_job_start,
    messages_csv,
)
from dashboard.views import org_view

PAGE_SIZE = 50
COUNT_CAP = 10_000
SEARCH_COUNT_CAP = 1_000
MAX_PAGE = 1_000_000


def _page_number(raw: str | None) -> tuple[int, str]:
    if raw in (None, ""):
        return 1, ""
    try:
        page = int(raw)
    except ValueError:
        return 1, f"“{raw[:20]}” is not a page number; showing the first page."
    if page < 1:
        return 1, "Pages start at 1; showing the first page."
    if page > MAX_PAGE:  # its offset would not even fit the database's integers
        return 1, f"There is no page {raw[:20]}; showing the first page."
    return page, ""


def _query(data: QueryDict, **changes) -> str:
    """The query string with some parameters changed (None removes one); empty values dropped."""
    q = data.copy()
    for key, value in changes.items():
        q.pop(key, None)
        if value is not None:
            q[key] = value
    return urlencode([(k, v) for k, vs in q.lists() for v in vs if v != ""])


def _sort_links(data: QueryDict, current: str) -> dict[str, dict]:
    """For each sortable column: the link that sorts by it (toggling direction) and its state."""
    links = {}
    for key in SORTS:
        if current == f"-{key}":
            target, state = key, "descending"
        elif current == key:
            target, state = f"-{key}", "ascending"
        else:
            target, state = f"-{key}", "none"
        links[key] = {"query": _query(data, sort=target, page=None), "state": state}
    return links


def _explorer_context(request, org) -> dict:
    filters = conversation_filter(request.GET, org=org, request=request)
    page, page_error = _page_number(request.GET.get("page"))
    context = {
        "org": org,
        "filters": filters,
        "form": filters.form,
        "rows": [],
        "page": page,
        "page_error": page_error,
        "has_next": False,
        "total": None,
        "total_capped": False,
        "query": _query(request.GET, page=None),
        "periods": PERIOD_CHOICES,
        "default_period": DEFAULT_PERIOD,
    }
    if not filters.is_valid():
        return context
    queryset = filters.qs.select_related("bot", "campaign", "metrics")
    offset = (page - 1) * PAGE_SIZE
    # Counting a common search term means probing every conversation counted: count less.
    cap = SEARCH_COUNT_CAP if filters.form.cleaned_data.get("q") else COUNT_CAP
    with serial_plans():
        rows = list(queryset[offset : offset + PAGE_SIZE + 1])
        total = count_capped(filters.qs, cap + 1)
    if page > 1 and not rows:
        last = max(1, -(-min(total, cap) // PAGE_SIZE))
        context["page_error"] = (
            f"Page {page} is past the end of the results (the last page is {last})."
            if total <= cap
            else f"Page {page} is past the end of the results."
        )
    context.update(
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        total=min(total, cap),
        total_capped=total > cap,
        first_row=offset + 1,
        last_row=offset + min(len(rows), PAGE_SIZE),
        prev_query=_query(request.GET, page=str(page - 1) if page > 2 else None),
        next_query=_query(request.GET, page=str(page + 1)),
        sort=filters.sort_key,
        sort_links=_sort_links(request.GET, filters.sort_key),
        time_range=filters.time_range,
    )
    return context


@org_view(perm="conversations.explore")
@require_GET
def conversations(request, org):
    """The explorer: filters, search, sorting and pages; HTMX swaps only the results."""
    context = _explorer_context(request, org)
    status = 400 if not context["filters"].is_valid() else 200
    template = "dashboard/conversations.html"
    if request.htmx and not request.htmx.boosted:
        template += "#results"
        status = 200  # htmx swaps only 2xx answers; the errors are in the fragment
    return render(request, template, context, status=status)


@org_view(perm="conversations.export")
@require_GET
def conversations_export(request, org):
    """CSV of exactly the explorer's view (`?kind=messages` for their messages); a large export
    becomes a background job with a download link."""
    filters = conversation_filter(request.GET, org=org, request=request)
    if not filters.is_valid():
        context = _explorer_context(request, org)
        return render(request, "dashboard/conversations.html", context, status=400)
    kind = "messages" if request.GET.get("kind") == "messages" else "conversations"
    name = export_filename(org, kind, filters.time_range.slug)
    # Messages run about ten to a conversation: the same size limit counts them that way.
    limit = settings.EXPORT_ASYNC_ROWS // (10 if kind == "messages" else 1)
    if count_capped(filters.qs, limit + 1) > limit:
        job = export_job_start(
            org=org,
            kind=kind,
            query=_query(request.GET, page=None),
            filename=name,
            user=request.user,
        )
        return redirect("dashboard:export_job", org_slug=org.slug, job_id=job.id)
    if kind == "messages":
        chunks = messages_csv(org=org, conversations=filters.qs)
    else:
        chunks = conversations_csv(filters.qs)
    audit_request(
        request,
        action="export.downloaded",
        target=name,
        details=export_details(request.GET, kind=kind),
    )
    return CsvStreamingResponse(chunks, filename=name)


@org_view(perm="conversations.export")
@require_GET
def export_job(request, org, job_id):
    """A background export's state; the page polls until the file is ready."""
    job = export_job_get(org=org, job_id=str(job_id), user=request.user)
    if job is None:
        raise Http404("No such export.")
    template = "dashboard/export_job.html"
    if request.htmx:
        template += "#state"
    return render(request, template, {"org": org, "job": job})


@org_view(perm="conversations.export")
@require_GET
def export_job_download(request, org, job_id):
    job = export_job_get(org=org, job_id=str(job_id), user=request.user)
    if job is None or job.status != "ready" or not job.path.exists():
        raise Http404("No such export, or it is not ready yet.")
    audit_request(
        request,
        action="export.downloaded",
        target=job.filename,
        details={"kind": job.kind, "background_job": str(job.id)},
    )
    return FileResponse(
        open(job.path, "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=job.filename,
        content_type="text/csv; charset=utf-8",
    )
