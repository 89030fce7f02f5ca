"""Identity resolution (DESIGN 3) on the real dbt models: hand-written cases with their partitions.

All cases land in one warehouse with their own identifiers and share one build.
"""

from __future__ import annotations

import datetime as dt

import pytest
from wh import build, land, partition, query
from identity_reference import BLANK, BLOCKED, resolve, wire

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("identity")]

UTC = dt.timezone.utc


NON_STRING_EMAILS = [False, True, 42, 0.5, {"a": 1}, ["x@y.z"]]
# Blocked values padded with whitespace other than spaces, and blank values made of it.
PADDED_BLOCKED = [" NULL ", "Undefined", "null\n", "\tundefined", "\u00a0None\u3000", "\ufeffnil\r\n", "\t",
                  "\u2028", "\u200b"]


def _cases() -> list[dict]:
    events = [
        # 1. anonymous browsing, then login
        wire("page", "c1-1", anonymousId="c1_a1"),
        wire("identify", "c1-2", anonymousId="c1_a1", userId="c1_u1", traits={"email": "c1@x.com"}),
        # 2. alias anon -> user
        wire("page", "c2-1", anonymousId="c2_a1"),
        wire("alias", "c2-2", previousId="c2_a1", userId="c2_u1"),
        # 3. alias user -> user (a renamed account)
        wire("track", "c3-1", userId="c3_old", event="Logged In"),
        wire("alias", "c3-2", previousId="c3_old", userId="c3_new"),
        # 5. shared device: one anonymous_id, two users
        wire("identify", "c5-1", anonymousId="c5_dev", userId="c5_u1"),
        wire("identify", "c5-2", anonymousId="c5_dev", userId="c5_u2"),
        # 8. email normalisation, traits and context.traits
        wire("identify", "c8-1", userId="c8_u1", traits={"email": "  Bob@Example.COM "}),
        wire("track", "c8-2", anonymousId="c8_a9", event="Viewed", context={"traits": {"email": "bob@example.com"}}),
        # 10. only blocked identifiers
        wire("track", "c10-1", anonymousId="undefined", userId="null", event="Ghost"),
        # 11. the same value as a user_id and as an anonymous_id
        wire("track", "c11-1", userId="c11_same", event="Logged In"),
        wire("page", "c11-2", anonymousId="c11_same"),
        # 13. a group call's traits describe the group: its email is not the person's
        wire("group", "c13-1", userId="c13_u1", groupId="g1", traits={"email": "billing@c13.com"}),
        wire("group", "c13-2", userId="c13_u2", groupId="g1", traits={"email": "billing@c13.com"}),
        # 14. a tab as the userId of two strangers: blank, it must not merge them
        wire("identify", "c14-1", anonymousId="c14_a1", userId="\t"),
        wire("identify", "c14-2", anonymousId="c14_a2", userId="\t"),
        # 15. emails padded with tabs, newlines and no-break spaces are the same email
        wire("identify", "c15-1", userId="c15_u1", traits={"email": "\tCarol@Example.com\n"}),
        wire("track", "c15-2", anonymousId="c15_a1", event="Viewed", context={"traits": {"email": "carol@example.com\u00a0"}}),
    ]
    # 16. traits.email that is not a JSON string (false, 42, an object, a list) is no identifier: two devices
    # sending the same one stay apart
    for i, value in enumerate(NON_STRING_EMAILS):
        events.append(wire("identify", f"c16-{i}-a", anonymousId=f"c16_a{i}", traits={"email": value}))
        events.append(wire("track", f"c16-{i}-b", anonymousId=f"c16_b{i}", event="Viewed",
                           context={"traits": {"email": value}}))
    # 4. a 200-link alias chain
    events.append(wire("track", "c4-start", userId="c4_u000", event="Signed Up"))
    events += [
        wire("alias", f"c4-{i}", previousId=f"c4_u{i:03d}", userId=f"c4_u{i + 1:03d}") for i in range(200)
    ]
    # 6. a junk email typed into a form by 60 strangers
    events += [
        wire("identify", f"c6-{i}", anonymousId=f"c6_a{i:02d}", traits={"email": "Test@Test.com"}) for i in range(60)
    ]
    # 7. every blocked value, as user_id, anonymous_id and email, next to a real anonymous_id
    for i, value in enumerate(sorted(BLOCKED) + PADDED_BLOCKED):
        events.append(wire("identify", f"c7-{i}", anonymousId="c7_a1", userId=value, traits={"email": value}))
        events.append(wire("page", f"c7-anon-{i}", anonymousId=value, userId="c7_u1"))
    return events


# 9. a duplicated message_id: the copy received first wins, whatever its content
DUPLICATE_FIRST = wire("identify", "c9-1", anonymousId="c9_a1", userId="c9_u1")
DUPLICATE_LATER = wire("identify", "c9-1", anonymousId="c9_a2", userId="c9_u1")


@pytest.fixture(scope="module")
def built(module_project):
    land(module_project, _cases() + [DUPLICATE_LATER], received_at=dt.datetime(2026, 1, 2, tzinfo=UTC))
    land(module_project, [DUPLICATE_FIRST], received_at=dt.datetime(2026, 1, 1, tzinfo=UTC))
    build(module_project, select="+identity_graph +profiles")
    return module_project, partition(module_project)


def profile_of(profiles: set[frozenset], identifier: tuple[str, str]) -> frozenset:
    return next(p for p in profiles if identifier in p)


def test_anonymous_browsing_joins_the_login(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c1_u1")) == {
        ("anonymous_id", "c1_a1"), ("user_id", "c1_u1"), ("email", "c1@x.com")
    }


def test_alias_links_anonymous_to_user(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c2_u1")) == {("anonymous_id", "c2_a1"), ("user_id", "c2_u1")}


def test_alias_links_user_to_user(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c3_new")) == {("user_id", "c3_old"), ("user_id", "c3_new")}


def test_200_link_alias_chain_is_one_profile(built):
    _, (profiles, _) = built
    chain = profile_of(profiles, ("user_id", "c4_u000"))
    assert chain == {("user_id", f"c4_u{i:03d}") for i in range(201)}


def test_shared_device_is_a_conflict_and_merges_nothing(built):
    _, (profiles, conflicts) = built
    assert ("anonymous_id", "c5_dev") in conflicts
    assert profile_of(profiles, ("user_id", "c5_u1")) == {("user_id", "c5_u1")}
    assert profile_of(profiles, ("user_id", "c5_u2")) == {("user_id", "c5_u2")}


def test_junk_email_typed_by_60_strangers_is_a_conflict(built):
    project, (profiles, conflicts) = built
    assert ("email", "test@test.com") in conflicts
    assert all(profile_of(profiles, ("anonymous_id", f"c6_a{i:02d}")) == {("anonymous_id", f"c6_a{i:02d}")}
               for i in range(60))
    [(reason,)] = query(project, "select reason from identity_conflicts where identifier_value = 'test@test.com'")
    assert reason == "seen with 60 distinct anonymous_ids (max_anonymous_ids_per_identifier = 50)"


def test_blocked_values_never_become_identifiers(built):
    project, (profiles, _) = built
    values = {v.strip(BLANK).lower() for (v,) in query(project, "select distinct identifier_value from identity_graph")}
    assert not values & BLOCKED
    assert profile_of(profiles, ("anonymous_id", "c7_a1")) == {("anonymous_id", "c7_a1")}
    assert profile_of(profiles, ("user_id", "c7_u1")) == {("user_id", "c7_u1")}


def test_emails_are_lower_cased_and_trimmed_from_traits_and_context(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c8_u1")) == {
        ("user_id", "c8_u1"), ("email", "bob@example.com"), ("anonymous_id", "c8_a9")
    }


def test_a_tab_as_user_id_is_blank_and_merges_no_strangers(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("anonymous_id", "c14_a1")) == {("anonymous_id", "c14_a1")}
    assert profile_of(profiles, ("anonymous_id", "c14_a2")) == {("anonymous_id", "c14_a2")}
    assert not any(kind == "user_id" and not value.strip(BLANK) for p in profiles for kind, value in p)


def test_emails_padded_with_tabs_newlines_and_no_break_spaces_are_trimmed(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c15_u1")) == {
        ("user_id", "c15_u1"), ("email", "carol@example.com"), ("anonymous_id", "c15_a1")
    }


def test_an_email_that_is_not_a_json_string_is_no_identifier(built):
    project, (profiles, _) = built
    for i in range(len(NON_STRING_EMAILS)):
        assert profile_of(profiles, ("anonymous_id", f"c16_a{i}")) == {("anonymous_id", f"c16_a{i}")}
        assert profile_of(profiles, ("anonymous_id", f"c16_b{i}")) == {("anonymous_id", f"c16_b{i}")}
    emails = {v for (v,) in query(project, "select identifier_value from identity_graph where identifier_type = 'email'")}
    assert not emails & {"false", "true", "42", "0.5", '{"a":1}', '["x@y.z"]'}


def test_duplicate_message_id_keeps_the_copy_received_first(built):
    project, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c9_u1")) == {("user_id", "c9_u1"), ("anonymous_id", "c9_a1")}
    assert query(project, "select count(*), min(anonymous_id) from events where message_id = 'c9-1'") == [(1, "c9_a1")]


def test_event_with_only_blocked_identifiers_belongs_to_no_profile(built):
    project, _ = built
    assert query(project, "select count(*) from events where message_id = 'c10-1'") == [(1,)]
    assert query(project, "select count(*) from profile_events where message_id = 'c10-1'") == [(0,)]


def test_same_value_as_user_id_and_anonymous_id_are_different_identifiers(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c11_same")) == {("user_id", "c11_same")}
    assert profile_of(profiles, ("anonymous_id", "c11_same")) == {("anonymous_id", "c11_same")}


def test_group_traits_email_is_not_an_identifier(built):
    _, (profiles, _) = built
    assert profile_of(profiles, ("user_id", "c13_u1")) == {("user_id", "c13_u1")}
    assert not any(("email", "billing@c13.com") in p for p in profiles)


def test_every_case_matches_the_reference_union_find(built):
    _, (profiles, conflicts) = built
    expected_profiles, expected_conflicts = resolve([DUPLICATE_FIRST] + _cases() + [DUPLICATE_LATER])
    assert profiles == expected_profiles
    assert conflicts == expected_conflicts


def test_profile_id_is_the_same_whatever_the_arrival_order(built, tmp_path, monkeypatch):
    from wh import redirect

    project, _ = built
    before = set(query(project, "select identifier_type, identifier_value, profile_id from identity_graph"))
    other = redirect(tmp_path, monkeypatch)
    reordered = list(reversed(_cases()))
    land(other, reordered[:100], received_at=dt.datetime(2026, 1, 3, tzinfo=UTC))
    land(other, reordered[100:] + [DUPLICATE_FIRST], received_at=dt.datetime(2026, 1, 1, tzinfo=UTC))
    land(other, [DUPLICATE_LATER], received_at=dt.datetime(2026, 1, 2, tzinfo=UTC))
    build(other, select="+identity_graph")
    after = set(query(other, "select identifier_type, identifier_value, profile_id from identity_graph"))
    assert after == before


def test_late_event_bridges_two_existing_profiles(project):
    land(project, [
        wire("identify", "l-1", anonymousId="l_a1", userId="l_u1"),
        wire("track", "l-2", anonymousId="l_a2", event="Viewed", context={"traits": {"email": "l@x.com"}}),
    ])
    build(project, select="+profiles")
    [(user_profile,)] = query(project, "select profile_id from identity_graph where identifier_value = 'l_u1'")
    assert query(project, "select count(*) from profiles") == [(2,)]
    # Sent offline days ago, received now: it links the two devices.
    late = wire("track", "l-3", anonymousId="l_a2", userId="l_u1", event="Synced",
                timestamp="2025-12-20T00:00:00Z")
    land(project, [late], received_at=dt.datetime(2026, 1, 5, tzinfo=UTC))
    build(project, select="+profiles")
    assert query(project, "select count(*), min(profile_id) from profiles") == [(1, user_profile)]
    assert query(project, "select first_seen_at from profiles") == [(dt.datetime(2025, 12, 20),)]


def test_values_of_the_blocked_var_are_trimmed_and_lower_cased_like_the_events(project):
    land(project, [
        wire("identify", "v-1", anonymousId="v_a1", userId="support\n", traits={"email": "\tHelp@Acme.com"}),
        wire("identify", "v-2", anonymousId="v_a2", userId="\u00a0SUPPORT", traits={"email": "help@acme.com\u3000"}),
    ])
    build(project, select="+identity_graph",
          extra_vars={"blocked_identifier_values": ["\tSupport\u2028", " HELP@acme.com\ufeff"]})
    profiles, _ = partition(project)
    assert profiles == {frozenset({("anonymous_id", "v_a1")}), frozenset({("anonymous_id", "v_a2")})}
