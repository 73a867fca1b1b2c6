"""What governance costs: signed, checkpointed audit appends and checks vs the bare hash chain.

    .venv/bin/python benchmarks/governance.py [--rows 2000] [--repeats 5]

Method. Two SQLite audit logs in a temporary folder receive ``--rows`` identical rows: the
baseline is the hash chain alone (``AuditLog(engine)``, what Keel had before signatures); the
contender signs each row and head with Ed25519 and writes a signed checkpoint after each
commit. Each log is then verified ``--repeats`` times (median). Token authentication (an API
token checked against its hash and its audit rows) and a password sign-in (argon2id, default
cost) are timed too. Ratios are contender / baseline in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keel.registry.audit import AuditLog, open_database
from keel.registry.signing import AuditKey, CheckpointStore
from keel.server.users import UserStore


def _median(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fill(log: AuditLog, rows: int) -> float:
    start = time.perf_counter()
    for i in range(rows):
        log.append(
            actor="user:bench",
            action="approve",
            obj=f"m/v{i}",
            after={"state": "approved"},
            reason="r",
        )
    return (time.perf_counter() - start) / rows


def main() -> None:
    """Print the table of figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="keel-bench-governance-"))
    plain = AuditLog(open_database(f"sqlite:///{folder / 'plain.db'}"))
    signed = AuditLog(
        open_database(f"sqlite:///{folder / 'signed.db'}"),
        key=AuditKey.load_or_create(folder / "key"),
        checkpoints=CheckpointStore(str(folder / "checkpoints")),
    )
    append_plain, append_signed = _fill(plain, args.rows), _fill(signed, args.rows)
    verify_plain = _median(plain.verify, args.repeats)
    verify_signed = _median(signed.verify, args.repeats)
    users = UserStore(signed.engine, signed)
    admin = users.add("root", ["admin"], "correct horse battery staple", by=None)
    token = users.create_token(admin, label="bench")
    token_auth = _median(lambda: users.authenticate_token(token), 200)
    sign_in = _median(
        lambda: users.authenticate_password("root", "correct horse battery staple"), args.repeats
    )

    print(f"{args.rows:,} rows, SQLite, medians of {args.repeats}")
    print(f"{'':32}{'hash chain (baseline)':>24}{'signed + checkpoints':>24}{'ratio':>8}")
    print(
        f"{'append, per row':32}{append_plain * 1e3:>21.2f} ms{append_signed * 1e3:>21.2f} ms"
        f"{append_signed / append_plain:>7.1f}x"
    )
    print(
        f"{'verify the whole log':32}{verify_plain * 1e3:>21.0f} ms{verify_signed * 1e3:>21.0f} ms"
        f"{verify_signed / verify_plain:>7.1f}x"
    )
    print(
        f"token authentication: {token_auth * 1e3:.2f} ms; "
        f"password sign-in (argon2id): {sign_in * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
