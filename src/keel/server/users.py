"""Users, roles, passwords and API tokens of the governance service, mirrored in the audit log.

An admin adds users (the very first user is the bootstrap admin); a user logs in with a
password (argon2id, rate limited) and mints API tokens for themself (``keel_<id>_<secret>``,
only the secret's sha256 stored). Every change writes one audit row in the same transaction.
The audit log is the source of truth: a token authenticates only when the log holds its
creation and the user's roles as the log gives them, so rows inserted or edited by SQL are
refused, and :meth:`UserStore.verify_against_audit` names every such difference.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from keel.errors import KeelError, did_you_mean
from keel.registry.audit import AuditLog, AuditRow, audit_table, create_missing_tables
from keel.registry.principal import ROLES, AuthenticationError, Principal
from keel.server.names import NameRefused, normalize_name, skeleton

MIN_PASSWORD, MAX_PASSWORD = 12, 1024
MAX_FAILURES, FAILURE_WINDOW_S = 5, 15 * 60
TOKEN_DAYS = (1, 365)
WRONG_LOGIN = "wrong user name or password"
BOOTSTRAP_ACTOR = "bootstrap"

_metadata = sa.MetaData()
users_table = sa.Table(
    "keel_users",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("display", sa.String(200), nullable=False),
    sa.Column("roles", sa.Text, nullable=False),  # JSON list, sorted
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
tokens_table = sa.Table(
    "keel_tokens",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("keel_users.id"), nullable=False, index=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
)
failures_table = sa.Table(
    "keel_login_failures",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, index=True),
    sa.Column("time", sa.Float, nullable=False),
)


class UserError(KeelError, ValueError):
    """An invalid user-store request: unknown user or token, role not in ROLES, short password."""

    exit_code = 2


@runtime_checkable
class Authenticator(Protocol):
    """Turns a bearer credential into a :class:`Principal` or raises :class:`AuthenticationError`.

    :class:`UserStore` is one; an OpenID Connect authenticator (authlib) would verify an ID token
    and map its subject to a Keel user id.
    """

    def authenticate_token(self, text: str) -> Principal:
        """The principal the credential ``text`` proves, or :class:`AuthenticationError`."""
        ...


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def _roles(roles: Iterable[str]) -> list[str]:
    """The sorted, distinct roles, each checked against ROLES."""
    if isinstance(roles, str):
        raise UserError(
            f"roles must be a list of role names such as ['{roles}'], not the string {roles!r}"
        )
    chosen = sorted(set(roles))
    for role in chosen:
        if role not in ROLES:
            raise UserError(
                f"unknown role {role!r}; roles are: {', '.join(ROLES)}.{did_you_mean(role, ROLES)}"
            )
    if not chosen:
        raise UserError(f"a user needs at least one role; roles are: {', '.join(ROLES)}")
    return chosen


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(
            f"a password needs at least {MIN_PASSWORD} (and at most {MAX_PASSWORD}) characters; "
            f"this one has {len(password)}"
        )


def _after(row: AuditRow) -> dict[str, Any]:
    facts = json.loads(row.after) if row.after else {}
    return facts if isinstance(facts, dict) else {}


def _replay(
    rows: Iterable[AuditRow],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Users and tokens as the audit log gives them: id -> facts.

    Each row's ``after`` updates the facts.
    """
    users: dict[str, dict[str, Any]] = {}
    tokens: dict[str, dict[str, Any]] = {}
    for row in rows:
        kind, _, key = row.object.partition(":")
        if kind == "user" and row.action == "user.add":
            users[key] = _after(row)
        elif kind == "user" and row.action.startswith("user.") and key in users:
            users[key].update(_after(row))
        elif kind == "token" and row.action == "token.create":
            tokens[key] = {**_after(row), "revoked": False}
        elif kind == "token" and row.action == "token.revoke" and key in tokens:
            tokens[key]["revoked"] = True
    return users, tokens


class UserStore:
    """The users, tokens and login failures of one database.

    Each change is audited in the same transaction.
    """

    def __init__(
        self,
        engine: sa.Engine,
        audit: AuditLog,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.audit, self.clock = engine, audit, clock
        self.hasher = hasher or PasswordHasher()
        if self.hasher.type is not Type.ID:
            raise ValueError(
                f"passwords are hashed with argon2id; this hasher uses {self.hasher.type.name}"
            )
        self._dummy_hash = self.hasher.hash(
            secrets.token_urlsafe(16)
        )  # verified for unknown names: equal time
        create_missing_tables(engine, _metadata)

    # ----- changes (admin) -----

    def add(
        self,
        name: str,
        roles: Iterable[str],
        password: str,
        *,
        by: Principal | None,
        display: str | None = None,
    ) -> Principal:
        """Add a user; ``by`` must hold "users", or be None for the very first user (an admin)."""
        if by is not None:
            by.require("users")
        key, chosen = normalize_name(name), _roles(roles)
        _check_password(password)
        if by is None and "admin" not in chosen:
            raise UserError(
                f"the first user must hold the role admin (only an admin can add users); "
                f"roles given: {', '.join(chosen)}"
            )
        user_id, shown = uuid.uuid4().hex, self._display(display, key)
        password_hash = self.hasher.hash(password)
        facts = {
            "name": key,
            "display": shown,
            "roles": chosen,
            "disabled": False,
            "password_fingerprint": _sha256(password_hash),
        }
        with self.engine.begin() as conn:
            # the audit row goes first: appending takes the log's write lock, so the checks below
            # see every user committed before, and two first users cannot both be the bootstrap
            # admin
            self.audit.append(
                actor=BOOTSTRAP_ACTOR if by is None else by.actor,
                action="user.add",
                obj=f"user:{user_id}",
                after=facts,
                reason="bootstrap admin" if by is None else f"added by {by.name}",
                connection=conn,
            )
            existing = conn.execute(sa.select(users_table.c.name)).scalars().all()
            if by is None and (existing or self._users_added(conn) > 1):  # 1: the row just written
                raise AuthenticationError(
                    "the bootstrap admin exists already (the audit log holds a user.add): "
                    "sign in as an admin to add users"
                )
            self._refuse_taken(key, name, existing)
            conn.execute(
                users_table.insert().values(
                    id=user_id,
                    name=key,
                    display=shown,
                    roles=json.dumps(chosen),
                    password_hash=password_hash,
                    disabled=False,
                    created=self.clock(),
                )
            )
        self.audit.checkpoint()
        return Principal(id=user_id, name=key, roles=frozenset(chosen))

    def needs_bootstrap(self) -> bool:
        """True only while the audit log has never added a user.

        An emptied users table does not count.
        """
        with self.engine.connect() as conn:
            return self._users_added(conn) == 0

    @staticmethod
    def _users_added(conn: sa.Connection) -> int:
        """How many user.add rows the audit log holds."""
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(audit_table)
                .where(audit_table.c.action == "user.add")
            ).scalar_one()
        )

    def disable(self, name: str, *, by: Principal) -> None:
        """Disable a user (their password and tokens stop working); ``by`` must hold "users"."""
        self._set_disabled(name, True, by)

    def enable(self, name: str, *, by: Principal) -> None:
        """Enable a disabled user again; ``by`` must hold "users"."""
        self._set_disabled(name, False, by)

    def set_roles(self, name: str, roles: Iterable[str], *, by: Principal) -> None:
        """Replace a user's roles; ``by`` must hold "users"."""
        by.require("users")
        chosen = _roles(roles)
        with self.engine.begin() as conn:
            user = self._user(conn, name)
            held = json.loads(user.roles)
            if held == chosen:
                raise UserError(f"user '{user.name}' already has the roles {', '.join(chosen)}")
            if "admin" in held and "admin" not in chosen and not user.disabled:
                self._refuse_last_admin(conn, user, "lose the role admin")
            conn.execute(
                users_table.update()
                .where(users_table.c.id == user.id)
                .values(roles=json.dumps(chosen))
            )
            self.audit.append(
                actor=by.actor,
                action="user.roles",
                obj=f"user:{user.id}",
                before={"roles": held},
                after={"roles": chosen},
                reason=f"by {by.name}",
                connection=conn,
            )
        self.audit.checkpoint()

    def set_password(self, name: str, old: str, new: str) -> None:
        """Change one's own password: ``old`` must be right (and is rate limited like a login)."""
        _check_password(new)
        me = self.authenticate_password(name, old)
        password_hash = self.hasher.hash(new)
        with self.engine.begin() as conn:
            conn.execute(
                users_table.update()
                .where(users_table.c.id == me.id)
                .values(password_hash=password_hash)
            )
            self.audit.append(
                actor=me.actor,
                action="user.password",
                obj=f"user:{me.id}",
                after={"password_fingerprint": _sha256(password_hash)},
                reason="changed by the user",
                connection=conn,
            )
        self.audit.checkpoint()

    # ----- tokens -----

    def create_token(self, principal: Principal, *, label: str, days: int = 90) -> str:
        """A new API token for ``principal`` itself; shown only now.

        ``principal`` is the caller's own authenticated principal.
        """
        if not TOKEN_DAYS[0] <= days <= TOKEN_DAYS[1]:
            raise UserError(f"a token lives {TOKEN_DAYS[0]} to {TOKEN_DAYS[1]} days; {days} asked")
        label = label.strip()
        if not 1 <= len(label) <= 100 or not label.isprintable():
            raise UserError(
                "a token label is 1 to 100 printable characters (what the token is for); "
                f"got {label!r}"
            )
        token_id, secret, now = uuid.uuid4().hex, secrets.token_urlsafe(32), self.clock()
        digest, expires = _sha256(secret), now + days * 86400
        with self.engine.begin() as conn:
            owner = conn.execute(
                sa.select(users_table).where(users_table.c.id == principal.id)
            ).first()
            if owner is None or owner.disabled:
                raise AuthenticationError(
                    f"user '{principal.name}' is unknown or disabled: no token can be made"
                )
            conn.execute(
                tokens_table.insert().values(
                    id=token_id,
                    user_id=principal.id,
                    secret_sha256=digest,
                    label=label,
                    created=now,
                    expires=expires,
                    revoked=False,
                )
            )
            self.audit.append(
                actor=principal.actor,
                action="token.create",
                obj=f"token:{token_id}",
                after={
                    "user_id": principal.id,
                    "secret_sha256": digest,
                    "label": label,
                    "expires": _iso(expires),
                },
                reason=label,
                connection=conn,
            )
        self.audit.checkpoint()
        return f"keel_{token_id}_{secret}"

    def revoke_token(self, token_id: str, *, by: Principal) -> None:
        """Revoke a token; ``by`` must own it or hold "users"."""
        with self.engine.begin() as conn:
            token = conn.execute(
                sa.select(tokens_table).where(tokens_table.c.id == token_id)
            ).first()
            if token is None:
                raise UserError(f"no token {token_id!r}; list yours with tokens()")
            if token.user_id != by.id:
                by.require("users")
            if token.revoked:
                raise UserError(f"token {token_id} is revoked already")
            conn.execute(
                tokens_table.update().where(tokens_table.c.id == token_id).values(revoked=True)
            )
            self.audit.append(
                actor=by.actor,
                action="token.revoke",
                obj=f"token:{token_id}",
                before={"revoked": False},
                after={"user_id": token.user_id, "revoked": True},
                reason=f"by {by.name}",
                connection=conn,
            )
        self.audit.checkpoint()

    def tokens(self, principal: Principal) -> builtins.list[dict[str, Any]]:
        """``principal``'s own tokens (id, label, created, expires, revoked), not their secrets."""
        query = (
            sa.select(tokens_table)
            .where(tokens_table.c.user_id == principal.id)
            .order_by(tokens_table.c.created)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "id": t.id,
                    "label": t.label,
                    "created": _iso(t.created),
                    "expires": _iso(t.expires),
                    "revoked": t.revoked,
                }
                for t in conn.execute(query)
            ]

    # ----- authentication -----

    def authenticate_password(self, name: str, password: str) -> Principal:
        """The user ``name`` proved by ``password``.

        5 failures in 15 minutes lock that name for the window.
        """
        try:
            key: str | None = normalize_name(name)
        except NameRefused:
            key = None
        user = None
        if key is not None:
            with self.engine.begin() as conn:
                now = self.clock()
                self._refuse_if_locked(conn, key, now)
                # counted as a failure until it succeeds, so a burst of parallel guesses meets the
                # limit too
                conn.execute(failures_table.insert().values(name=key, time=now))
                user = conn.execute(sa.select(users_table).where(users_table.c.name == key)).first()
        password_ok = self._verify(
            self._dummy_hash if user is None else user.password_hash, password
        )
        if user is None or user.disabled or not password_ok:
            raise AuthenticationError(WRONG_LOGIN)
        principal = self._audited_principal(user, password_hash=user.password_hash)
        with self.engine.begin() as conn:
            conn.execute(failures_table.delete().where(failures_table.c.name == key))
        return principal

    def authenticate_token(self, text: str) -> Principal:
        """The user an API token ``keel_<id>_<secret>`` proves.

        Refused when unknown, wrong, revoked or expired.
        """
        prefix, _, rest = text.partition("_")
        token_id, _, secret = rest.partition("_")
        if (
            prefix != "keel"
            or len(token_id) != 32
            or not secret
            or len(secret) > 100
            or any(c not in "0123456789abcdef" for c in token_id)
        ):
            raise AuthenticationError(
                "malformed token: a Keel API token reads keel_<32 hex digits>_<secret>"
            )
        with self.engine.connect() as conn:
            token = conn.execute(
                sa.select(tokens_table).where(tokens_table.c.id == token_id)
            ).first()
            user = (
                None
                if token is None
                else conn.execute(
                    sa.select(users_table).where(users_table.c.id == token.user_id)
                ).first()
            )
        if (
            not hmac.compare_digest(
                _sha256(secret), "0" * 64 if token is None else token.secret_sha256
            )
            or token is None
            or user is None
        ):
            raise AuthenticationError("unknown token or wrong secret")
        if token.revoked:
            raise AuthenticationError(
                f"token {token_id} ({token.label}) was revoked; create a new one"
            )
        if self.clock() >= token.expires:
            raise AuthenticationError(
                f"token {token_id} ({token.label}) expired at {_iso(token.expires)}; "
                "create a new one"
            )
        audited = _replay(self.audit.rows(obj=f"token:{token_id}"))[1].get(token_id)
        if audited is None or (audited.get("user_id"), audited.get("secret_sha256")) != (
            token.user_id,
            token.secret_sha256,
        ):
            raise AuthenticationError(
                f"token {token_id} is not in the audit log (made outside Keel): refused"
            )
        if audited["revoked"]:
            raise AuthenticationError(f"token {token_id} was revoked in the audit log: refused")
        if audited.get("expires") != _iso(token.expires):
            raise AuthenticationError(
                f"token {token_id} expires at {_iso(token.expires)} but the audit log says "
                f"{audited.get('expires')}: refused"
            )
        if user.disabled:
            raise AuthenticationError(f"user '{user.name}' is disabled: their tokens are refused")
        return self._audited_principal(user)

    # ----- reading and checking -----

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every user (id, name, display, roles, disabled, created) by name; no password hash."""
        with self.engine.connect() as conn:
            users = conn.execute(sa.select(users_table).order_by(users_table.c.name)).all()
        return [
            {
                "id": u.id,
                "name": u.name,
                "display": u.display,
                "roles": json.loads(u.roles),
                "disabled": u.disabled,
                "created": _iso(u.created),
            }
            for u in users
        ]

    def verify_against_audit(self) -> builtins.list[str]:
        """Every way the users and tokens tables differ from the audit log, one sentence each.

        Users come first, by name.
        """
        audited_users, audited_tokens = _replay(self.audit.rows())
        with self.engine.connect() as conn:
            users = {
                u.id: u for u in conn.execute(sa.select(users_table).order_by(users_table.c.name))
            }
            tokens = {
                t.id: t
                for t in conn.execute(
                    sa.select(tokens_table).order_by(tokens_table.c.created, tokens_table.c.id)
                )
            }
        problems = [
            p for u in users.values() for p in self._user_differences(u, audited_users.get(u.id))
        ]
        problems += [
            f"user '{facts.get('name')}' ({uid}) is in the audit log but missing from the users "
            "table (deleted outside Keel)"
            for uid, facts in audited_users.items()
            if uid not in users
        ]
        names = {uid: facts.get("name", uid) for uid, facts in audited_users.items()}
        names |= {u.id: u.name for u in users.values()}
        for token in tokens.values():
            audited = audited_tokens.get(token.id)
            who = f"token {token.id} of user '{names.get(token.user_id, token.user_id)}'"
            if audited is None:
                problems.append(
                    f"{who} is in the tokens table but not in the audit log (inserted outside Keel)"
                )
            elif (audited.get("user_id"), audited.get("secret_sha256")) != (
                token.user_id,
                token.secret_sha256,
            ):
                problems.append(
                    f"{who}: its user or secret hash differs from the audit log "
                    "(edited outside Keel)"
                )
            elif audited.get("expires") != _iso(token.expires):
                problems.append(
                    f"{who} expires at {_iso(token.expires)} but the audit log says "
                    f"{audited.get('expires')}"
                )
            elif audited["revoked"] and not token.revoked:
                problems.append(
                    f"{who} is active in the tokens table but revoked in the audit log "
                    "(un-revoked outside Keel)"
                )
            elif token.revoked and not audited["revoked"]:
                problems.append(
                    f"{who} is revoked in the tokens table but not in the audit log "
                    "(revoked outside Keel)"
                )
        problems += [
            f"token {tid} of user "
            f"'{names.get(facts.get('user_id', ''), facts.get('user_id'))}' is in the "
            "audit log but missing from the tokens table (deleted outside Keel)"
            for tid, facts in audited_tokens.items()
            if tid not in tokens
        ]
        return problems

    # ----- helpers -----

    @staticmethod
    def _user_differences(user: sa.Row[Any], audited: dict[str, Any] | None) -> builtins.list[str]:
        """How one users-table row differs from the audit log's facts about that user."""
        who = f"user '{user.name}' ({user.id})"
        if audited is None:
            return [f"{who} is in the users table but not in the audit log (inserted outside Keel)"]
        problems = []
        if audited.get("name") != user.name:
            problems.append(f"{who} is named '{audited.get('name')}' in the audit log")
        if audited.get("roles") != json.loads(user.roles):
            problems.append(
                f"{who} has the roles {json.loads(user.roles)} in the users table but "
                f"{audited.get('roles')} in the audit log: roles differ from the audit log"
            )
        if audited.get("disabled") != bool(user.disabled):
            problems.append(
                f"{who} is {'disabled' if user.disabled else 'enabled'} in the users table but "
                f"{'disabled' if audited.get('disabled') else 'enabled'} in the audit log"
            )
        if audited.get("password_fingerprint") != _sha256(user.password_hash):
            problems.append(
                f"{who}'s password hash was replaced outside Keel (it does not match the audit log)"
            )
        return problems

    def _audited_principal(
        self, user: sa.Row[Any], *, password_hash: str | None = None
    ) -> Principal:
        """The principal for ``user`` when the audit log agrees with its row.

        Otherwise an AuthenticationError.
        """
        audited = _replay(self.audit.rows(obj=f"user:{user.id}"))[0].get(user.id)
        if audited is None:
            raise AuthenticationError(
                f"user '{user.name}' is not in the audit log (added outside Keel): refused"
            )
        roles = json.loads(user.roles)
        if audited.get("roles") != roles:
            raise AuthenticationError(
                f"user '{user.name}': roles differ from the audit log (users table: "
                f"{', '.join(roles)}; audit log: {', '.join(audited.get('roles', []))}): refused"
            )
        if audited.get("name") != user.name:
            raise AuthenticationError(
                f"user '{user.name}' is named '{audited.get('name')}' in the audit log: refused"
            )
        if audited.get("disabled") is not False:
            raise AuthenticationError(f"user '{user.name}' is disabled in the audit log: refused")
        if password_hash is not None and audited.get("password_fingerprint") != _sha256(
            password_hash
        ):
            raise AuthenticationError(
                f"user '{user.name}': the password hash differs from the audit log: refused"
            )
        return Principal(id=user.id, name=user.name, roles=frozenset(roles))

    def _set_disabled(self, name: str, disabled: bool, by: Principal) -> None:
        by.require("users")
        action, word = ("user.disable", "disabled") if disabled else ("user.enable", "enabled")
        with self.engine.begin() as conn:
            user = self._user(conn, name)
            if bool(user.disabled) == disabled:
                raise UserError(f"user '{user.name}' is {word} already")
            if disabled and "admin" in json.loads(user.roles):
                self._refuse_last_admin(conn, user, "be disabled")
            conn.execute(
                users_table.update().where(users_table.c.id == user.id).values(disabled=disabled)
            )
            self.audit.append(
                actor=by.actor,
                action=action,
                obj=f"user:{user.id}",
                before={"disabled": not disabled},
                after={"disabled": disabled},
                reason=f"by {by.name}",
                connection=conn,
            )
        self.audit.checkpoint()

    @staticmethod
    def _user(conn: sa.Connection, name: str) -> sa.Row[Any]:
        key = normalize_name(name)
        user = conn.execute(sa.select(users_table).where(users_table.c.name == key)).first()
        if user is None:
            names = conn.execute(sa.select(users_table.c.name)).scalars().all()
            raise UserError(f"no user '{key}'.{did_you_mean(key, names)}")
        return user

    @staticmethod
    def _refuse_last_admin(conn: sa.Connection, user: sa.Row[Any], change: str) -> None:
        others = [
            u
            for u in conn.execute(
                sa.select(users_table).where(
                    users_table.c.id != user.id, sa.not_(users_table.c.disabled)
                )
            )
            if "admin" in json.loads(u.roles)
        ]
        if not others:
            raise UserError(
                f"user '{user.name}' is the last enabled admin and cannot {change}; "
                "make another admin first"
            )

    @staticmethod
    def _refuse_taken(key: str, typed: str, existing: Iterable[str]) -> None:
        """Refuse a name that is, or looks like, an existing user's name."""
        for other in existing:
            if other == key:
                raise NameRefused(
                    f"user name {typed!r} is refused: it is the same name as existing user "
                    f"'{other}' (names are compared after NFKC and casefold)"
                )
            if skeleton(other) == skeleton(key):
                raise NameRefused(
                    f"user name {typed!r} is refused: it is too like existing user '{other}' "
                    "(the same letters once accents are dropped and lookalike letters mapped)"
                )

    @staticmethod
    def _display(display: str | None, key: str) -> str:
        shown = key if display is None else display.strip()
        if not 1 <= len(shown) <= 200 or not shown.isprintable():
            raise UserError(f"a display name is 1 to 200 printable characters; got {display!r}")
        return shown

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _refuse_if_locked(conn: sa.Connection, key: str, now: float) -> None:
        conn.execute(
            failures_table.delete().where(
                failures_table.c.name == key, failures_table.c.time <= now - FAILURE_WINDOW_S
            )
        )
        times = (
            conn.execute(
                sa.select(failures_table.c.time)
                .where(failures_table.c.name == key)
                .order_by(failures_table.c.time.desc())
            )
            .scalars()
            .all()
        )
        if len(times) >= MAX_FAILURES:
            retry = times[MAX_FAILURES - 1] + FAILURE_WINDOW_S
            raise AuthenticationError(
                f"too many failed logins for '{key}' ({len(times)} within "
                f"{FAILURE_WINDOW_S // 60} minutes): every attempt is refused until "
                f"{_iso(retry)}; try again then"
            )
