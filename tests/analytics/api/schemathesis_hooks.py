"""schemathesis hooks for test_schema_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

The positive_data_acceptance check sends schema-valid requests and expects no 400. A few 400s
answer what OpenAPI cannot state, and each is in the parameter's description: a range whose end
is at or before its start (a rule across two parameters), a range wholly before the retention
limit (it moves with the clock) and a pagination cursor the API never issued (an opaque token).
This hook lets exactly those answers through, recognised by the field and message the API gives;
any other 400 to a schema-valid request, and every other check's failure, still fails the run.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

# field -> the API's messages for rules the schema cannot express (analytics/filters.py,
# analytics/api/read_serializers.py DateRangeQuery, analytics/api/read.py ConversationCursor)
INEXPRESSIBLE = {
    "end": {"The end must be after the start.", "The whole range lies before the retention limit."},
    "end_date": {"The end date is before the start date.", "The range is past retention."},
    "cursor": {"Invalid cursor."},
}


def is_inexpressible_refusal(status_code: int, content: bytes) -> bool:
    """A 400 whose every field error is one of INEXPRESSIBLE's."""
    if status_code != 400:
        return False
    try:
        errors = json.loads(content)
    except ValueError:
        return False
    if not isinstance(errors, dict) or not errors:
        return False
    return all(
        field in INEXPRESSIBLE
        and isinstance(messages, list)
        and messages
        and all(message in INEXPRESSIBLE[field] for message in messages)
        for field, messages in errors.items()
    )


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but a schema-valid request refused for an inexpressible rule."""
    if isinstance(failure, RejectedPositiveData):
        return not is_inexpressible_refusal(response.status_code, response.content)
    return True
