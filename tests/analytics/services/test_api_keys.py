import hashlib

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from analytics.models import ApiKey
from analytics.services.api_keys import api_key_authenticate, api_key_create, api_key_revoke


def test_it_stores_only_a_prefix_and_a_hash(org):
    created = api_key_create(organization=org, name="ci", scopes=["ingest"])
    stored = ApiKey.objects.get(pk=created.api_key.pk)
    assert created.secret.startswith(f"bf_{stored.prefix}_")
    assert stored.key_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret not in {stored.prefix, stored.key_hash, stored.name}
    assert stored.scopes == ["ingest"]


def test_it_authenticates_a_key_only_for_its_scopes(org):
    secret = api_key_create(organization=org, name="ci", scopes="ingest").secret
    key = api_key_authenticate(secret, scope="ingest")
    assert key is not None and key.organization == org
    assert api_key_authenticate(secret, scope="read") is None
    assert (
        api_key_authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B"), scope="ingest")
        is None
    )
    assert api_key_authenticate("not-a-key", scope="ingest") is None


def test_it_stops_accepting_a_revoked_key(org):
    created = api_key_create(organization=org, name="ci", scopes=["ingest", "read"])
    api_key_revoke(api_key=created.api_key)
    assert api_key_authenticate(created.secret, scope="read") is None
    assert ApiKey.objects.get(pk=created.api_key.pk).revoked_at is not None


def test_it_rejects_unknown_scopes_and_duplicate_names(org):
    with pytest.raises(ValidationError) as excinfo:
        api_key_create(organization=org, name="ci", scopes="ingest,write")
    assert "write" in excinfo.value.message_dict["scopes"][0]
    api_key_create(organization=org, name="ci", scopes="read")
    with pytest.raises(ValidationError) as excinfo:
        api_key_create(organization=org, name="ci", scopes="read")
    assert "already exists in this organization" in excinfo.value.message_dict["name"][0]


def test_the_command_prints_the_key_and_nothing_else(org, capsys):
    call_command("create_api_key", "--org", "acme", "--name", "ci", "--scopes", "ingest, read")
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    key = api_key_authenticate(printed.strip(), scope="read")
    assert key is not None and key.name == "ci" and key.scopes == ["ingest", "read"]


def test_the_command_names_a_bad_org_or_scope(org):
    with pytest.raises(CommandError, match="--org: no organization with slug 'nope'"):
        call_command("create_api_key", "--org", "nope", "--name", "ci")
    with pytest.raises(CommandError, match="--scopes: Unknown scope"):
        call_command("create_api_key", "--org", "acme", "--name", "ci", "--scopes", "root")
