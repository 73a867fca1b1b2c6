"""Thirteen other spellings of 'alice' cannot become a second user, each for a stated reason.

On SQLite and PostgreSQL.
"""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher

from keel.errors import KeelError
from keel.registry.audit import AuditLog, open_database
from keel.server.names import MAX_LENGTH, NameRefused, normalize_name, skeleton
from keel.server.users import UserStore

PASSWORD = "correct horse battery"
SAME = "it is the same name as existing user 'alice'"

# (spelling, why it is refused): every one of these approved alice's model when --by was free text
SPELLINGS = [
    pytest.param("Alice", SAME, id="capitalized"),
    pytest.param("ALICE", SAME, id="upper-case"),
    pytest.param(" alice", "whitespace U+0020 (SPACE) at position 0", id="leading-space"),
    pytest.param("alice ", "whitespace U+0020 (SPACE) at position 5", id="trailing-space"),
    pytest.param("\talice", "whitespace U+0009 (TAB) at position 0", id="tab"),
    pytest.param("\uff41\uff4c\uff49\uff43\uff45", SAME, id="full-width"),
    pytest.param("\u0430lice", "it mixes the scripts CYRILLIC, LATIN", id="cyrillic-a"),
    pytest.param(
        "ali\u200bce",
        "invisible control or format character U+200B (ZERO WIDTH SPACE) at position 3",
        id="zero-width-space",
    ),
    pytest.param(
        "alice@bank.example", "'@' U+0040 (COMMERCIAL AT), which is not a letter", id="e-mail"
    ),
    pytest.param("alice\u0301", "it is too like existing user 'alice'", id="combining-accent"),
    pytest.param("", "it is empty or blank", id="empty"),
    pytest.param("   ", "it is empty or blank", id="blank"),
    pytest.param("ali\nce", "whitespace U+000A (LINE FEED) at position 3", id="newline"),
]


@pytest.fixture
def users(database_url: str) -> UserStore:
    engine = open_database(database_url)
    return UserStore(
        engine, AuditLog(engine), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.mark.parametrize(("spelling", "reason"), SPELLINGS)
def test_another_spelling_of_an_existing_user_is_refused_with_its_reason(
    users: UserStore, spelling: str, reason: str
) -> None:
    admin = users.add("root", ["admin"], PASSWORD, by=None)
    users.add("alice", ["developer"], PASSWORD, by=admin)
    audit_rows = len(users.audit.rows())
    with pytest.raises(NameRefused, match=re.escape(reason)) as refused:
        users.add(spelling, ["validator"], PASSWORD, by=admin)
    assert repr(spelling) in str(
        refused.value
    )  # the message names the refused text, invisible characters escaped
    assert [u["name"] for u in users.list()] == ["alice", "root"]
    assert len(users.audit.rows()) == audit_rows  # a refused name writes nothing


def test_ordinary_names_are_accepted(users: UserStore) -> None:
    admin = users.add("root", ["admin"], PASSWORD, by=None)
    for name in ["bo", "maria.lopez", "o-brien", "zoë", "li_wei2"]:
        assert users.add(name, ["viewer"], PASSWORD, by=admin).name == name
    assert (
        users.add("\uff2a\uff41\uff4e", ["viewer"], PASSWORD, by=admin).name == "jan"
    )  # full-width: canonical


def test_an_accented_name_is_fine_alone_but_too_like_its_unaccented_twin(users: UserStore) -> None:
    admin = users.add("root", ["admin"], PASSWORD, by=None)
    users.add("zoe\u0308", ["viewer"], PASSWORD, by=admin)  # decomposed ë: NFKC composes it
    assert [u["name"] for u in users.list()] == ["root", "zo\u00eb"]
    with pytest.raises(NameRefused, match="too like existing user 'zoë'"):
        users.add("zoe", ["viewer"], PASSWORD, by=admin)


def test_an_all_cyrillic_lookalike_is_too_like_the_latin_name(users: UserStore) -> None:
    admin = users.add("alice", ["admin"], PASSWORD, by=None)
    # Cyrillic a, palochka, i, es, ie: one script, so only the skeleton
    lookalike = "\u0430\u04cf\u0456\u0441\u0435"
    assert normalize_name(lookalike) == lookalike
    with pytest.raises(NameRefused, match="too like existing user 'alice'"):
        users.add(lookalike, ["validator"], PASSWORD, by=admin)
    assert users.list()[0]["id"] == admin.id and len(users.list()) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\ufeffalice", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
        ("\u202ealice", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("ali\u200dce", "U+200D (ZERO WIDTH JOINER)"),
        ("alice\u00a0", "whitespace U+00A0 (NO-BREAK SPACE)"),
        ("1alice", "it starts with '1', not a letter"),
        ("_alice", "it starts with '_', not a letter"),
        ("al\u03b9ce", "it mixes the scripts GREEK, LATIN"),
        ("alice!", "'!' U+0021 (EXCLAMATION MARK)"),
        ("a" * (MAX_LENGTH + 1), f"it is {MAX_LENGTH + 1} characters long, more than {MAX_LENGTH}"),
    ],
)
def test_normalize_name_states_the_rule_and_what_is_accepted(text: str, reason: str) -> None:
    with pytest.raises(NameRefused, match=re.escape(reason)) as refused:
        normalize_name(text)
    assert "a user name is 1 to 64 letters, digits 0-9, '.', '-' or '_'" in str(refused.value)
    assert isinstance(refused.value, KeelError) and isinstance(refused.value, ValueError)
    assert refused.value.exit_code == 2


def test_normalize_name_folds_case_and_width_and_keeps_one_script() -> None:
    assert normalize_name("Maria.Lopez") == "maria.lopez"
    assert normalize_name("\uff2d\uff21\uff32\uff29\uff21") == "maria"  # full-width
    assert normalize_name("Straße") == "strasse"
    assert normalize_name("Дмитрий") == "дмитрий"
    assert normalize_name("a" * MAX_LENGTH) == "a" * MAX_LENGTH


def test_skeleton_drops_accents_and_maps_lookalikes() -> None:
    assert skeleton("zoë") == skeleton("zoe") == "zoe"
    assert skeleton("\u0440\u0430\u0443") == "pay"  # Cyrillic er, a, u
    assert skeleton("\u03bf\u03c1\u03b1") == "opa"  # Greek omicron, rho, alpha
    assert skeleton("bob") != skeleton("bo")
