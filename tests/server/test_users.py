"""Users, passwords and tokens: admin-managed, authenticated and audited.

They are also checked against the audit log.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import uuid
from collections.abc import Callable
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from keel.registry.audit import AuditLog, open_database
from keel.registry.principal import AuthenticationError, PermissionDenied, Principal
from keel.server.users import (
    WRONG_LOGIN,
    Authenticator,
    UserError,
    UserStore,
    failures_table,
    tokens_table,
    users_table,
)

PASSWORD = "correct horse battery"
DAY = 86400.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingHasher(PasswordHasher):
    """Fast argon2id parameters for tests, counting how many passwords were checked."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, digest: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(digest, password)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(database_url: str, clock: Clock) -> UserStore:
    engine = open_database(database_url)
    return UserStore(engine, AuditLog(engine), hasher=CountingHasher(), clock=clock)


@pytest.fixture
def admin(users: UserStore) -> Principal:
    return users.add("root", ["admin"], PASSWORD, by=None)


def _sql(users: UserStore, statement: sa.Executable) -> None:
    with users.engine.begin() as conn:
        conn.execute(statement)


def _audit_text(users: UserStore) -> str:
    return json.dumps(
        [[r.actor, r.action, r.object, r.before, r.after, r.reason] for r in users.audit.rows()]
    )


def test_the_bootstrap_admin_is_made_once_and_must_be_an_admin(users: UserStore) -> None:
    with pytest.raises(
        UserError, match=r"the first user must hold the role admin.*roles given: developer"
    ):
        users.add("root", ["developer"], PASSWORD, by=None)
    assert users.list() == [] and users.audit.rows() == []
    root = users.add("root", ["admin"], PASSWORD, by=None)
    assert root.roles == {"admin"} and len(root.id) == 32
    [row] = users.audit.rows()
    assert (row.actor, row.action, row.object) == ("bootstrap", "user.add", f"user:{root.id}")
    with pytest.raises(AuthenticationError, match="the bootstrap admin exists already"):
        users.add("second", ["admin"], PASSWORD, by=None)
    assert [u["name"] for u in users.list()] == ["root"] and len(users.audit.rows()) == 1


def test_only_a_user_with_the_users_permission_adds_users(
    users: UserStore, admin: Principal
) -> None:
    dev = users.add("dana", ["developer"], PASSWORD, by=admin)
    with pytest.raises(
        PermissionDenied, match="dana may not manage users: it needs the role admin"
    ):
        users.add("eve", ["validator"], PASSWORD, by=dev)
    with pytest.raises(PermissionDenied):
        users.set_roles("dana", ["validator"], by=dev)
    with pytest.raises(PermissionDenied):
        users.disable("root", by=dev)
    with pytest.raises(
        UserError, match="unknown role 'approver'; roles are: admin, developer, validator, deployer"
    ):
        users.add("eve", ["approver"], PASSWORD, by=admin)
    assert [u["name"] for u in users.list()] == ["dana", "root"]
    assert users.add("eve", ["validator"], PASSWORD, by=admin, display="Eve Adams").roles == {
        "validator"
    }
    assert {u["name"]: u["display"] for u in users.list()}["eve"] == "Eve Adams"


def test_a_password_needs_twelve_characters(users: UserStore, admin: Principal) -> None:
    with pytest.raises(UserError, match=r"a password needs at least 12 .*this one has 11"):
        users.add("dana", ["developer"], "x" * 11, by=admin)
    users.add("dana", ["developer"], "x" * 12, by=admin)
    assert users.authenticate_password("dana", "x" * 12).name == "dana"
    with pytest.raises(UserError, match="at least 12"):
        users.set_password("dana", "x" * 12, "short")


def test_passwords_are_stored_as_argon2id_and_never_audited(
    users: UserStore, admin: Principal
) -> None:
    users.add("dana", ["developer"], PASSWORD, by=admin)
    users.set_password("dana", PASSWORD, "a new long passphrase")
    with users.engine.connect() as conn:
        hashes = conn.execute(sa.select(users_table.c.password_hash)).scalars().all()
    assert len(hashes) == 2 and all(h.startswith("$argon2id$") for h in hashes)
    audited = _audit_text(users)
    for secret in [PASSWORD, "a new long passphrase", "$argon2", *hashes]:
        assert secret not in audited
    assert all("password_hash" not in u for u in users.list())
    with pytest.raises(AuthenticationError, match=WRONG_LOGIN):
        users.authenticate_password("dana", PASSWORD)
    assert users.authenticate_password("Dana", "a new long passphrase").name == "dana"


def test_unknown_wrong_and_disabled_logins_look_the_same(
    users: UserStore, admin: Principal
) -> None:
    dana = users.add("dana", ["developer"], PASSWORD, by=admin)
    assert users.authenticate_password("dana", PASSWORD) == dana
    users.disable("dana", by=admin)
    hasher = users.hasher
    assert isinstance(hasher, CountingHasher)
    for name, password in [
        ("nobody", PASSWORD),
        ("dana", "wrong password!"),
        ("dana", PASSWORD),
        ("not a name", PASSWORD),
    ]:
        before = hasher.verified
        with pytest.raises(AuthenticationError) as refused:
            users.authenticate_password(name, password)
        assert str(refused.value) == WRONG_LOGIN
        assert (
            hasher.verified == before + 1
        )  # one argon2 check each time, a dummy hash for unknown names


def test_five_failures_lock_a_name_for_fifteen_minutes(
    users: UserStore, admin: Principal, clock: Clock
) -> None:
    users.add("dana", ["developer"], PASSWORD, by=admin)
    for _ in range(5):
        with pytest.raises(AuthenticationError, match=WRONG_LOGIN):
            users.authenticate_password("dana", "wrong password!")
        clock.now += 1
    hasher = users.hasher
    assert isinstance(hasher, CountingHasher)
    before = hasher.verified
    with pytest.raises(
        AuthenticationError,
        match=r"too many failed logins for 'dana' \(5 within 15 minutes\).*"
        r"until 2023-11-14T22:28:20\+00:00",
    ):
        users.authenticate_password(
            "DANA", PASSWORD
        )  # the right password, another spelling: still refused
    assert hasher.verified == before  # the password was not even checked
    assert users.authenticate_password("root", PASSWORD) == admin  # other names are not locked
    clock.now += 15 * 60 - 5
    assert users.authenticate_password("dana", PASSWORD).name == "dana"
    with users.engine.connect() as conn:
        assert (
            conn.execute(sa.select(failures_table).where(failures_table.c.name == "dana")).all()
            == []
        )


def test_a_success_clears_the_failures(users: UserStore, admin: Principal) -> None:
    users.add("dana", ["developer"], PASSWORD, by=admin)
    for _ in range(2):
        for _ in range(4):
            with pytest.raises(AuthenticationError, match=WRONG_LOGIN):
                users.authenticate_password("dana", "wrong password!")
        assert users.authenticate_password("dana", PASSWORD).name == "dana"


def test_an_attempt_counts_as_a_failure_while_its_password_is_checked(
    users: UserStore, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending: list[int] = []
    check = users.hasher.verify

    def verify(digest: str | bytes, password: str | bytes) -> Literal[True]:
        with users.engine.connect() as conn:  # what a parallel guess would see meanwhile
            pending.append(
                conn.execute(sa.select(sa.func.count()).select_from(failures_table)).scalar_one()
            )
        return check(digest, password)

    monkeypatch.setattr(users.hasher, "verify", verify)
    assert users.authenticate_password("root", PASSWORD) == admin
    assert pending == [1]
    with users.engine.connect() as conn:
        assert conn.execute(sa.select(failures_table)).all() == []  # cleared by the success


def test_a_token_is_shown_once_stored_hashed_and_works(users: UserStore, admin: Principal) -> None:
    dana = users.add("dana", ["developer"], PASSWORD, by=admin)
    text = users.create_token(dana, label="ci pipeline", days=30)
    prefix, token_id, secret = text.split("_", 2)
    assert prefix == "keel" and len(token_id) == 32 and len(secret) >= 43
    with users.engine.connect() as conn:
        [row] = conn.execute(sa.select(tokens_table)).all()
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest() and secret not in str(
        tuple(row)
    )
    assert secret not in _audit_text(users)
    [listed] = users.tokens(dana)
    assert listed["id"] == token_id and listed["label"] == "ci pipeline" and not listed["revoked"]
    assert secret not in json.dumps(listed)
    assert users.authenticate_token(text) == dana
    assert users.tokens(admin) == []
    assert isinstance(users, Authenticator)


@pytest.mark.parametrize("days", [0, 366])
def test_a_token_lives_one_to_365_days(users: UserStore, admin: Principal, days: int) -> None:
    with pytest.raises(UserError, match=f"a token lives 1 to 365 days; {days} asked"):
        users.create_token(admin, label="x", days=days)


def test_expired_revoked_malformed_and_wrong_tokens_are_refused(
    users: UserStore, admin: Principal, clock: Clock
) -> None:
    dana = users.add("dana", ["developer"], PASSWORD, by=admin)
    eve = users.add("eve", ["validator"], PASSWORD, by=admin)
    short = users.create_token(dana, label="short", days=1)
    kept = users.create_token(dana, label="kept")
    evetoken = users.create_token(eve, label="eve's")
    clock.now += DAY
    with pytest.raises(AuthenticationError, match="expired at 2023-11-15T22:13:20"):
        users.authenticate_token(short)
    assert users.authenticate_token(kept) == dana
    with pytest.raises(PermissionDenied):  # another non-admin user cannot revoke dana's token
        users.revoke_token(kept.split("_")[1], by=eve)
    users.revoke_token(kept.split("_")[1], by=dana)
    with pytest.raises(AuthenticationError, match="was revoked"):
        users.authenticate_token(kept)
    users.revoke_token(evetoken.split("_")[1], by=admin)  # an admin may revoke anyone's token
    with pytest.raises(AuthenticationError, match="was revoked"):
        users.authenticate_token(evetoken)
    fresh = users.create_token(eve, label="fresh")
    dana_id, eve_secret = users.create_token(dana, label="d").split("_")[1], fresh.split("_", 2)[2]
    with pytest.raises(AuthenticationError, match="unknown token or wrong secret"):
        users.authenticate_token(f"keel_{dana_id}_{eve_secret}")  # eve's secret on dana's token id
    with pytest.raises(AuthenticationError, match="unknown token or wrong secret"):
        users.authenticate_token(f"keel_{uuid.uuid4().hex}_{eve_secret}")
    for malformed in [
        "",
        "keel",
        "keel_",
        f"keel_{dana_id}",
        f"keel_{dana_id}_",
        f"bearer_{dana_id}_x",
        f"keel_{dana_id.upper()}_x",
        "keel_short_secret",
        "alice",
    ]:
        with pytest.raises(AuthenticationError, match="malformed token"):
            users.authenticate_token(malformed)
    assert users.authenticate_token(fresh) == eve


def test_a_disabled_users_token_is_refused_until_enabled(
    users: UserStore, admin: Principal
) -> None:
    dana = users.add("dana", ["developer"], PASSWORD, by=admin)
    text = users.create_token(dana, label="laptop")
    users.disable("dana", by=admin)
    with pytest.raises(AuthenticationError, match="user 'dana' is disabled"):
        users.authenticate_token(text)
    with pytest.raises(AuthenticationError, match="unknown or disabled"):
        users.create_token(dana, label="another")
    users.enable("dana", by=admin)
    assert users.authenticate_token(text) == dana


def test_an_admin_cannot_mint_a_token_for_another_user(users: UserStore, admin: Principal) -> None:
    # create_token takes no user argument: the token is for the principal passed, and the service
    # passes the caller's own authenticated principal. An admin holding only their own principal
    # can mint only their own.
    assert list(inspect.signature(users.create_token).parameters) == ["principal", "label", "days"]
    val = users.add("vera", ["validator"], PASSWORD, by=admin)
    text = users.create_token(admin, label="admin's")
    assert users.authenticate_token(text) == admin and users.authenticate_token(text).id != val.id
    assert users.tokens(val) == []
    with pytest.raises(
        AuthenticationError, match="unknown or disabled"
    ):  # a principal no store ever made
        users.create_token(
            Principal(id=uuid.uuid4().hex, name="vera", roles=frozenset({"validator"})), label="x"
        )


def test_an_insider_inserting_a_validator_and_token_by_sql_is_refused_and_named(
    users: UserStore, admin: Principal
) -> None:
    mallory, token_id, secret = uuid.uuid4().hex, uuid.uuid4().hex, "s3cret-of-mallory"
    _sql(
        users,
        users_table.insert().values(
            id=mallory,
            name="mallory",
            display="Mallory",
            roles='["validator"]',
            password_hash=users.hasher.hash(PASSWORD),
            disabled=False,
            created=0.0,
        ),
    )
    _sql(
        users,
        tokens_table.insert().values(
            id=token_id,
            user_id=mallory,
            label="x",
            created=0.0,
            expires=2e9,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            revoked=False,
        ),
    )
    with pytest.raises(AuthenticationError, match=f"token {token_id} is not in the audit log"):
        users.authenticate_token(f"keel_{token_id}_{secret}")
    with pytest.raises(AuthenticationError, match="user 'mallory' is not in the audit log"):
        users.authenticate_password("mallory", PASSWORD)
    problems = users.verify_against_audit()
    assert len(problems) == 2
    assert (
        f"user 'mallory' ({mallory}) is in the users table but not in the audit log" in problems[0]
    )
    assert (
        f"token {token_id} of user 'mallory' is in the tokens table but not in the audit log"
        in problems[1]
    )


def test_a_token_inserted_by_sql_for_a_real_user_is_refused(
    users: UserStore, admin: Principal
) -> None:
    token_id, secret = uuid.uuid4().hex, "forged-secret"
    _sql(
        users,
        tokens_table.insert().values(
            id=token_id,
            user_id=admin.id,
            label="x",
            created=0.0,
            expires=2e9,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            revoked=False,
        ),
    )
    with pytest.raises(AuthenticationError, match="not in the audit log"):
        users.authenticate_token(f"keel_{token_id}_{secret}")
    assert users.verify_against_audit() == [
        f"token {token_id} of user 'root' is in the tokens table "
        "but not in the audit log (inserted outside Keel)"
    ]


def test_roles_edited_by_sql_are_refused_and_named(users: UserStore, admin: Principal) -> None:
    dana = users.add("dana", ["developer"], PASSWORD, by=admin)
    text = users.create_token(dana, label="laptop")
    assert users.verify_against_audit() == []
    _sql(
        users, users_table.update().where(users_table.c.id == dana.id).values(roles='["validator"]')
    )
    # refused rather than silently using the audit's roles: a tampered row is loud
    with pytest.raises(
        AuthenticationError, match=r"roles differ from the audit log.*validator.*developer"
    ):
        users.authenticate_token(text)
    with pytest.raises(AuthenticationError, match="roles differ from the audit log"):
        users.authenticate_password("dana", PASSWORD)
    [problem] = users.verify_against_audit()
    assert (
        f"user 'dana' ({dana.id}) has the roles ['validator'] in the users table but ['developer']"
        in problem
    )


def test_disabled_flag_un_revoked_token_and_replaced_hash_by_sql_are_refused_and_named(
    users: UserStore, admin: Principal
) -> None:
    dana = users.add("dana", ["developer"], PASSWORD, by=admin)
    text = users.create_token(dana, label="laptop")
    token_id = text.split("_")[1]
    users.revoke_token(token_id, by=dana)
    _sql(users, tokens_table.update().values(revoked=False))
    with pytest.raises(AuthenticationError, match="revoked in the audit log"):
        users.authenticate_token(text)
    users.disable("dana", by=admin)
    _sql(users, users_table.update().where(users_table.c.id == dana.id).values(disabled=False))
    with pytest.raises(AuthenticationError, match="disabled in the audit log"):
        users.authenticate_password("dana", PASSWORD)
    _sql(
        users,
        users_table.update()
        .where(users_table.c.id == admin.id)
        .values(password_hash=users.hasher.hash("the insider's password")),
    )
    with pytest.raises(AuthenticationError, match="password hash differs from the audit log"):
        users.authenticate_password("root", "the insider's password")
    problems = users.verify_against_audit()
    assert len(problems) == 3
    assert (
        "user 'dana'" in problems[0]
        and "enabled in the users table but disabled in the audit log" in problems[0]
    )
    assert "user 'root'" in problems[1] and "password hash was replaced outside Keel" in problems[1]
    assert (
        f"token {token_id} of user 'dana' is active in the tokens table but revoked" in problems[2]
    )


def test_every_change_writes_exactly_one_audit_row(users: UserStore) -> None:
    seen = 0

    def only_new_row(action: str) -> tuple[str, str, dict[str, Any]]:
        nonlocal seen
        rows = users.audit.rows()
        assert len(rows) == seen + 1, f"{len(rows) - seen} audit rows for one {action}"
        seen = len(rows)
        assert rows[-1].action == action
        return rows[-1].actor, rows[-1].object, json.loads(rows[-1].after)

    def fingerprint(user_id: str) -> str:
        with users.engine.connect() as conn:
            stored = conn.execute(
                sa.select(users_table.c.password_hash).where(users_table.c.id == user_id)
            ).scalar()
        return hashlib.sha256(str(stored).encode()).hexdigest()

    root = users.add("root", ["admin"], PASSWORD, by=None)
    assert only_new_row("user.add") == (
        "bootstrap",
        f"user:{root.id}",
        {
            "name": "root",
            "display": "root",
            "roles": ["admin"],
            "disabled": False,
            "password_fingerprint": fingerprint(root.id),
        },
    )
    dana = users.add("Dana", ["developer"], PASSWORD, by=root, display="Dana Scully")
    assert only_new_row("user.add") == (
        root.actor,
        f"user:{dana.id}",
        {
            "name": "dana",
            "display": "Dana Scully",
            "roles": ["developer"],
            "disabled": False,
            "password_fingerprint": fingerprint(dana.id),
        },
    )
    users.set_roles("dana", ["developer", "deployer"], by=root)
    assert only_new_row("user.roles") == (
        root.actor,
        f"user:{dana.id}",
        {"roles": ["deployer", "developer"]},
    )
    users.disable("dana", by=root)
    assert only_new_row("user.disable") == (root.actor, f"user:{dana.id}", {"disabled": True})
    users.enable("dana", by=root)
    assert only_new_row("user.enable") == (root.actor, f"user:{dana.id}", {"disabled": False})
    users.set_password("dana", PASSWORD, "another long password")
    assert only_new_row("user.password") == (
        dana.actor,
        f"user:{dana.id}",
        {"password_fingerprint": fingerprint(dana.id)},
    )
    dana = users.authenticate_password("dana", "another long password")
    secret = users.create_token(dana, label="ci", days=10).split("_", 2)[2]
    [token] = users.tokens(dana)
    assert only_new_row("token.create") == (
        dana.actor,
        f"token:{token['id']}",
        {
            "user_id": dana.id,
            "secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "label": "ci",
            "expires": token["expires"],
        },
    )
    users.revoke_token(token["id"], by=root)
    assert only_new_row("token.revoke") == (
        root.actor,
        f"token:{token['id']}",
        {"user_id": dana.id, "revoked": True},
    )
    refused_changes: list[Callable[[], object]] = [
        lambda: users.disable("root", by=root),  # the last admin
        lambda: users.set_roles("root", ["viewer"], by=root),  # the last admin
        lambda: users.enable("dana", by=root),  # enabled already
        lambda: users.revoke_token(token["id"], by=root),  # revoked already
        lambda: users.add("DANA", ["viewer"], PASSWORD, by=root),  # the same name
    ]
    for refused in refused_changes:
        with pytest.raises(ValueError):  # UserError and NameRefused
            refused()
    assert len(users.audit.rows()) == seen  # a refused change writes no row
    assert users.verify_against_audit() == []


def test_the_last_enabled_admin_cannot_be_disabled_or_demoted(
    users: UserStore, admin: Principal
) -> None:
    with pytest.raises(
        UserError, match="user 'root' is the last enabled admin and cannot be disabled"
    ):
        users.disable("root", by=admin)
    with pytest.raises(UserError, match="cannot lose the role admin"):
        users.set_roles("root", ["developer"], by=admin)
    users.add("second", ["admin"], PASSWORD, by=admin)
    users.set_roles("root", ["developer"], by=admin)
    assert users.authenticate_password("root", PASSWORD).roles == {"developer"}
    with pytest.raises(UserError, match="no user 'nobody'"):
        users.disable("nobody", by=admin)
