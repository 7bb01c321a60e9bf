"""A dashboard socket's access check (dashboard/access.py): at most two queries per connect, shared
in a burst, and the same answers as Django's session auth plus the org's membership."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.db.backends import utils as db_utils

from analytics.models import Membership, Role
from config.asgi import application
from dashboard import consumers
from dashboard.access import Batch, member_access, session_user
from tests.dashboard.test_consumers import run
from tests.dashboard.test_revocation import open_page, page_headers, signed_in
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queries(monkeypatch):
    """Every SQL statement any thread runs, counted where Django's cursors execute it."""
    seen = []
    real_execute = db_utils.CursorWrapper._execute

    def counting_execute(self, sql, params, *ignored_wrappers):
        seen.append(sql)
        return real_execute(self, sql, params, *ignored_wrappers)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", counting_execute)
    return seen


def test_a_burst_of_sockets_shares_its_lookups(org, alice, queries):
    """Before: two queries per socket (40 for 20 tabs of one browser), each in a worker-thread
    call of its own with its own pool checkout and health check. Now the checks asked for while
    a batch is in flight are answered together, each distinct session once."""
    browser = signed_in(alice)

    async def scenario():
        queries.clear()
        pages = await asyncio.gather(*(open_page(browser) for _ in range(20)))
        count = len(queries)
        for page in pages:
            await page.disconnect()
        return count

    assert run(scenario) <= 8


def test_one_batch_answers_each_socket_for_itself(org, other_org, alice, bob, queries):
    """Members and an outsider (and a signed-out browser) in the same burst: each socket gets its
    own answer, and distinct sessions still cost at most two queries each."""
    members = [signed_in(alice) for _ in range(5)] + [signed_in(bob) for _ in range(5)]
    outsider = page_headers(signed_in(MembershipFactory(organization=other_org).user))
    unknown = [*page_headers(members[0])[:2], (b"cookie", b"sessionid=no-such-session-key")]

    async def attempt(headers):
        page = WebsocketCommunicator(application, "/ws/o/acme/live/", headers)
        answer = await page.connect(timeout=5)
        if answer[0]:
            await page.disconnect()
        return answer

    async def scenario():
        queries.clear()
        browsers = [*map(page_headers, members), outsider, unknown]
        answers = await asyncio.gather(*map(attempt, browsers))
        return answers, len(queries)

    answers, count = run(scenario)
    assert answers[:10] == [(True, None)] * 10
    assert answers[10:] == [(False, 4403), (False, 4403)]
    assert count <= 2 * 11 + 1  # 11 sessions with a user; the unknown key is one session read


def test_a_batch_asks_each_key_once_and_keeps_answers_apart():
    """Keys asked for while a batch runs go in the next one, each once; a waiter that goes away
    does not take the others' shared answer with it; a failing lookup fails only its own key."""
    calls = []

    def lookup(key):
        calls.append(key)
        time.sleep(0.2)
        if key == "bad":
            raise LookupError(key)
        return key * 2

    batch = Batch(lookup)

    async def scenario():
        first = asyncio.create_task(batch("a"))
        await asyncio.sleep(0.05)  # "a" is being looked up
        gone = asyncio.create_task(batch("b"))
        stay = [asyncio.create_task(batch(key)) for key in ("b", "b", "c", "bad")]
        await asyncio.sleep(0)
        gone.cancel()
        answers = await asyncio.gather(first, *stay, return_exceptions=True)
        return answers, gone.cancelled()

    answers, cancelled = run(scenario)
    assert answers[:4] == ["aa", "bb", "bb", "cc"]
    assert isinstance(answers[4], LookupError) and cancelled
    assert calls == ["a", "b", "c", "bad"]


def who_of(client):
    return session_user(client.cookies["sessionid"].value)


def test_it_answers_as_the_session_and_membership_say(org, other_org, alice, bob):
    alice_browser = signed_in(alice)
    who = who_of(alice_browser)
    assert who.user_id == alice.pk
    assert member_access(who, "acme") == (org.pk, None)
    assert member_access(who, "globex") == (None, 4403)  # not a member there
    assert member_access(who, "no-such-org") == (None, 4403)
    MembershipFactory(organization=other_org, user=alice, role=Role.VIEWER)
    assert member_access(who, "globex") == (other_org.pk, None)
    assert member_access(who, "acme", perm="members.manage") == (org.pk, None)
    assert member_access(who_of(signed_in(bob)), "acme", perm="members.manage") == (None, 4403)


def test_it_refuses_a_session_that_no_longer_signs_the_user_in(org, alice, bob):
    assert session_user(None) is None
    assert session_user("not-a-session") is None
    who = who_of(signed_in(alice))
    alice.set_password("a-new-password-456")
    alice.save()
    assert member_access(who, "acme") == (None, 4401)  # the password changed elsewhere

    bob_browser = signed_in(bob)
    who = who_of(bob_browser)
    # Signed out after the session was read but before the membership was: still refused.
    Session.objects.filter(session_key=bob_browser.cookies["sessionid"].value).delete()
    assert member_access(who, "acme") == (None, 4401)

    carol = MembershipFactory(organization=org, role=Role.ANALYST).user
    who = who_of(signed_in(carol))
    carol.is_active = False
    carol.save()
    assert member_access(who, "acme") == (None, 4401)
    carol.delete()
    assert member_access(who, "acme") == (None, 4401)


def test_a_removal_during_the_check_refuses_the_socket(org, alice, monkeypatch):
    """The membership goes while the socket's check is in flight (after the user's group was
    joined): the revocation that arrives meanwhile applies, and the socket is refused."""
    browser = signed_in(alice)
    real_access = consumers._member_access

    async def access_then_removed(who, slug):
        answer = await real_access(who, slug)  # still a member when the database was read
        await sync_to_async(Membership.objects.filter(organization=org, user=alice).delete)()
        await asyncio.sleep(0.5)  # the revoker has received the removal
        return answer

    monkeypatch.setattr(consumers, "_member_access", access_then_removed)

    async def scenario():
        page = WebsocketCommunicator(application, "/ws/o/acme/live/", page_headers(browser))
        return await page.connect(timeout=5)

    assert run(scenario) == (False, 4403)
