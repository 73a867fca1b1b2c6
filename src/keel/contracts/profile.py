"""Profile a table Keel has never seen and draft a starter spec for it (``keel init``).

:func:`profile_table` reads nothing: it summarizes a DataFrame the caller loaded.
:func:`starter_spec` turns the profile into a plain dict that :func:`keel.spec.parse_spec`
accepts, and :func:`render_spec_yaml` writes it as YAML under a review checklist.
Everything is deterministic: the same table gives byte-identical YAML.

The starter spec is safe to train unedited and unapprovable until reviewed: ids (unique or
near-unique codes, row numbers, the pandas index, card numbers) and dates other than the time
column are excluded; columns named like a protected attribute are listed under ``protected``;
sentinel codes become ``missing_values``; default gates are written; no reason text is
invented; and ``reviewed: false`` fails the ``spec_reviewed`` gate until a person flips it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import yaml

from keel.errors import DataError, did_you_mean
from keel.spec import CalendarPart, DataSpec

TOP_VALUES = 10
MAX_ALLOWED = 20  # int/str columns with at most this many values get an `allowed` list
MAX_CATEGORIES = 50  # str columns with at most this many values are always categorical
MAX_LEVELS = 5000  # str columns with more distinct values are never features (free text, keys)
LEVEL_ROWS = 10  # a level seen at least this often is "frequent"
FREQUENT_SHARE = 0.8  # ... and a wide str column is categorical when such levels hold 80% of rows
NEAR_UNIQUE = 0.95  # a column with at least this share of distinct values may be an id
_TARGET_WORDS = ("target", "label", "default", "fraud", "churn", "class", "outcome")
_KEY_TOKENS = {"id", "ids", "uuid", "guid"}  # an id by name, even repeated (customer_id)
_ID_TOKENS = {
    *_KEY_TOKENS,
    *("key", "number", "num", "no", "nr", "account", "acct", "card", "cc", "ccnum"),
    *("iban", "ssn", "phone", "email"),
}  # an id by name when (nearly) unique: card_type and num_dependents are not ids
# Names that read as a protected attribute or a close proxy of one (a zip code stands in for
# race and income). Each entry matches whole words of a column name, in order: 'age' matches
# AGE, applicant_age and AgeYears, never 'mortgage'; 'postal code' matches postal_code.
DEFAULT_PROTECTED_WORDS: tuple[str, ...] = (
    *("age", "sex", "gender", "race", "ethnicity", "ethnic", "religion", "nationality"),
    *("citizenship", "marital", "marriage", "dob", "birth", "birthdate", "birthday"),
    *("zip", "zipcode", "postcode", "postal code"),
)
# Default gates of a starter spec. Why these values: see _GATE_NOTES, written into the header.
STARTER_GATES: dict[str, float] = {
    "min_auc": 0.6,
    "min_auc_over_baseline": 0.0,
    "max_train_test_gap": 0.05,
    "max_ece": 0.05,
}
_GATE_NOTES = (
    "min_auc 0.6: a model barely above chance (0.5) is no basis for decisions;",
    "min_auc_over_baseline 0.0: never worse on the test rows than the logistic baseline;",
    "max_train_test_gap 0.05: a larger train-test AUC gap is overfitting;",
    "max_ece 0.05: stated probabilities within 5 points of the observed rates.",
)
MIN_CODE_ROWS = 3  # a sentinel code repeats: one extreme value is an outlier, not a code
_CODE = re.compile(r"^(-1|-9+|9+[6-9])$")  # -1, -9, -99, ...; 96-99, 996-999, 9996-9999, ...
_NOT_ID = {
    "paid",
    "unpaid",
    "prepaid",
    "valid",
    "invalid",
    "rapid",
    "solid",
    "fluid",
    "liquid",
    "humid",
    "hybrid",
    "acid",
    "grid",
    "bid",
    "covid",
    "void",
    "mid",
    "aid",
    "raid",
    "said",
}
_ISO_DATE = r"\d{4}-\d{2}"  # extended ISO 8601 only: bare '2024' or '20240101' stay text


@dataclass(frozen=True)
class ColumnProfile:
    """What one column holds: its spec dtype, missingness, cardinality and common values.

    ``distinct_values`` lists every non-null value, sorted, when there are at most
    ``MAX_ALLOWED`` of them (``None`` otherwise); ``top_values`` is ordered by frequency.
    ``missing_codes`` are sentinel codes (:func:`sentinel_codes`); ``min``, ``max`` and
    ``distinct_values`` leave them out. ``frequent_share`` is the share of non-null values
    whose value occurs at least ``LEVEL_ROWS`` times.
    """

    name: str
    dtype: str
    missing_rate: float
    n_unique: int
    min: float | None
    max: float | None
    top_values: list[Any]
    is_integral_float: bool = False
    distinct_values: list[Any] | None = None
    missing_codes: tuple[Any, ...] = ()
    frequent_share: float = 0.0

    @property
    def categorical(self) -> bool:
        """Whether a str column is a usable category rather than free text or a key.

        A few values always are; many values (up to ``MAX_LEVELS``) when levels that each
        repeat at least ``LEVEL_ROWS`` times hold ``FREQUENT_SHARE`` of the rows, as a
        merchant or a postcode district does and a name or an address does not. The model
        families handle rare levels themselves (regularized one-hot, LightGBM's smoothing).
        """
        if self.n_unique <= MAX_CATEGORIES:
            return True
        return self.n_unique <= MAX_LEVELS and self.frequent_share >= FREQUENT_SHARE


@dataclass(frozen=True)
class TableProfile:
    """A profiled table: its columns and the columns that look like id, target and time.

    ``id_reasons`` says, for each id candidate, why it reads as an identifier.
    """

    rows: int
    columns: list[ColumnProfile]
    id_candidates: list[str]
    target_candidates: list[str]
    time_candidates: list[str]
    id_reasons: dict[str, str] = field(default_factory=dict)

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        names = [c.name for c in self.columns]
        raise DataError(f"no column '{name}' in the profiled table.{did_you_mean(name, names)}")


def _is_whole(values: pd.Series) -> bool:
    floats = values.to_numpy(dtype="float64")
    return bool(len(floats)) and bool(
        np.isfinite(floats).all() and (floats == np.floor(floats)).all()
    )


def _classify(series: pd.Series) -> tuple[str, pd.Series, bool]:
    """The spec dtype, the non-null values in that dtype's form, and is_integral_float."""
    present = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return "bool", present.astype(bool), False
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime", present, False
    if pd.api.types.is_integer_dtype(series):
        return "int", present.astype("int64"), False
    if pd.api.types.is_float_dtype(series):
        if _is_whole(present):
            return "int", present.astype("int64"), True
        return "float", present.astype("float64"), False
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _classify(present.astype(object))
    if pd.api.types.is_object_dtype(series):
        return _classify_objects(present)
    if pd.api.types.is_string_dtype(series):
        return _classify_text(present)
    return "str", present.astype(str), False


def _classify_objects(present: pd.Series) -> tuple[str, pd.Series, bool]:
    kind = pd.api.types.infer_dtype(present, skipna=True)
    if kind == "boolean":
        return "bool", present.astype(bool), False
    if kind == "integer":
        return "int", present.astype("int64"), False
    if kind in ("floating", "mixed-integer-float", "decimal"):
        return _classify(pd.to_numeric(present).astype("float64"))
    if kind in ("datetime64", "datetime", "date"):
        try:
            return "datetime", pd.to_datetime(present), False
        except (ValueError, TypeError):
            return "str", present.astype(str), False
    if kind == "string":
        return _classify_text(present)
    return "str", present.astype(str), False


def _classify_text(present: pd.Series) -> tuple[str, pd.Series, bool]:
    text = present.astype(str)
    if len(text) and text.str.match(_ISO_DATE).all():
        try:
            return "datetime", pd.to_datetime(text, format="ISO8601"), False
        except (ValueError, TypeError, OverflowError):
            pass
    return "str", text, False


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as a plain Python value (timestamps as ISO 8601 text)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def sentinel_codes(values: pd.Series, counts: pd.Series | None = None) -> list[Any]:
    """The codes for "unknown" in a numeric column's non-null ``values``, sorted (often none).

    A value is proposed as a code when all of these hold:

    1. it has a code's shape: -1, -9, -99, ... or 96-99, 996-999, 9996-9999, ...;
    2. it repeats (at least ``MIN_CODE_ROWS`` rows): one extreme value is an outlier;
    3. it lies outside the other values by a wide margin, measured on those values alone
       (every code-shaped value that repeats is left out of them), which must hold at least
       three distinct values: a positive code exceeds their maximum by at least their range
       (num_dependents 0-5 with 96 and 98), a negative code sits below values that are never
       negative (a bureau score of -1 where scores run 300-900).

    So 99 inside ages 18-99 is a value, not a code, and -1 in a column running -5 to 5 is too.
    ``counts`` are ``values.value_counts()`` when the caller has them already.
    """
    if counts is None:
        counts = values.value_counts(sort=False)
    index = counts.index.to_numpy(dtype="float64")
    repeated = (
        np.isfinite(index) & (index == np.floor(index)) & (counts.to_numpy() >= MIN_CODE_ROWS)
    )
    shaped = [v for v in index[repeated] if _CODE.match(str(int(v)))]
    rest = index[~np.isin(index, shaped)]
    if not shaped or len(rest) < 3:
        return []
    low, high = float(rest.min()), float(rest.max())
    codes = [v for v in shaped if (v < 0 <= low) or (v > 0 and v - high >= high - low)]
    return sorted(int(v) if values.dtype.kind in "iu" else float(v) for v in codes)


def _profile_column(name: str, series: pd.Series, rows: int) -> ColumnProfile:
    dtype, values, integral = _classify(series)
    counts = values.value_counts(sort=False)
    codes = sentinel_codes(values, counts) if dtype in ("int", "float") else []
    valid = counts[~counts.index.isin(codes)] if codes else counts
    ranked = sorted(((int(n), _plain(v)) for v, n in valid.items()), key=lambda p: (-p[0], p[1]))
    numeric = dtype in ("int", "float") and len(valid)
    return ColumnProfile(
        name=name,
        dtype=dtype,
        missing_rate=(rows - len(values)) / rows if rows else 0.0,
        n_unique=len(counts),
        min=float(valid.index.min()) if numeric else None,
        max=float(valid.index.max()) if numeric else None,
        top_values=[v for _, v in ranked[:TOP_VALUES]],
        is_integral_float=integral,
        distinct_values=sorted(v for _, v in ranked) if len(ranked) <= MAX_ALLOWED else None,
        missing_codes=tuple(codes),
        frequent_share=float(valid[valid >= LEVEL_ROWS].sum() / valid.sum()) if len(valid) else 0.0,
    )


_WORD_BREAK = re.compile(r"[^0-9A-Za-z]+|(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])")


def _tokens(name: str) -> list[str]:
    """The words of a column name: split at punctuation, camelCase and a glued number."""
    return [t.lower() for t in _WORD_BREAK.split(name) if t]


def _looks_like_id(name: str, tokens: set[str] = _ID_TOKENS) -> bool:
    """Whether ``name`` reads as an id column: a word of it is in ``tokens`` or ends in 'id'.

    True for ``id``, ``customer_id``, ``CustomerID``, ``loanid``, ``row_key``,
    ``customer_number``, ``cc_num``, ``account``, ``iban``; false for ``paid`` or ``valid``.
    """
    return any(t in tokens or (t.endswith("id") and t not in _NOT_ID) for t in _tokens(name))


def _keyed(values: pd.Series) -> bool:
    """Whether every value is a code of letters and digits, such as ACC000123 or a UUID."""
    text = values.astype(str)
    return bool(len(text)) and bool(
        text.str.fullmatch(r"(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_\-./:#]*").all()
    )


def _long_digits(dtype: str, values: pd.Series) -> bool:
    """Whether every value is a 12- to 19-digit number (a card or account number)."""
    if not len(values):
        return False
    if dtype == "int":
        return bool((pd.to_numeric(values).abs() >= 10**11).all())
    return dtype == "str" and bool(values.astype(str).str.fullmatch(r"\d{12,19}").all())


def _id_reason(col: ColumnProfile, series: pd.Series, rows: int) -> str | None:
    """Why ``col`` reads as an identifier rather than a measurement, or None when it does not.

    Ids are int or text columns: the pandas index written to a CSV (``Unnamed: 0``); 12- to
    19-digit numbers, even repeated (card numbers, one per card); names with the word id
    (``customer_id`` repeats per transaction and is still no measurement); and columns with at
    least ``NEAR_UNIQUE`` of their rows distinct that have an id-like name such as
    ``customer_number`` (:func:`_looks_like_id`), hold letter-and-digit codes, or are unique,
    increasing integers (row numbers).
    """
    if col.dtype not in ("int", "str") or rows == 0:
        return None
    if re.fullmatch(r"Unnamed: \d+", col.name):
        return "the index pandas writes into a CSV"
    present = series.dropna()
    if _long_digits(col.dtype, present):
        return "a 12- to 19-digit number: a card or account number, or a raw timestamp"
    if _looks_like_id(col.name, _KEY_TOKENS):
        return "named as an id"
    if col.n_unique < NEAR_UNIQUE * rows:
        return None
    if _looks_like_id(col.name):
        return "(nearly) unique values under an id-like name"
    if col.dtype == "str" and _keyed(present):
        return "(nearly) unique letter-and-digit codes"
    if col.dtype == "int" and col.n_unique == rows and rows > 2 and series.is_monotonic_increasing:
        return "a row number: unique and increasing"
    return None


def _target_rank(name: str, position: int) -> tuple[bool, int]:
    lowered = name.lower()
    named = any(w in lowered for w in _TARGET_WORDS) or "y" in _tokens(name)
    return (not named, -position)


def profile_table(df: pd.DataFrame) -> TableProfile:
    """Summarize every column of ``df`` and name the likely id, target and time columns."""
    names = [str(c) for c in df.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"column names must be unique, but these repeat: {', '.join(duplicated)}")
    rows = len(df)
    columns = [_profile_column(name, df.iloc[:, i], rows) for i, name in enumerate(names)]
    reasons = {
        c.name: reason
        for i, c in enumerate(columns)
        if (reason := _id_reason(c, df.iloc[:, i], rows)) is not None
    }
    binary = [
        (i, c.name)
        for i, c in enumerate(columns)
        if c.n_unique == 2 and c.dtype != "datetime" and c.name not in reasons
    ]
    targets = [name for i, name in sorted(binary, key=lambda p: _target_rank(p[1], p[0]))]
    times = [c.name for c in columns if c.dtype == "datetime"]
    return TableProfile(
        rows=rows,
        columns=columns,
        id_candidates=list(reasons),
        target_candidates=targets,
        time_candidates=times,
        id_reasons=reasons,
    )


def _choose_target(
    profile: TableProfile, target: str | None, *, avoid: Sequence[str] = ()
) -> ColumnProfile:
    """``target``'s profile, or the best guess (a binary column not in ``avoid`` first)."""
    names = [c.name for c in profile.columns]
    if target is None:
        if not profile.target_candidates:
            raise DataError(
                "cannot choose a target: no column has exactly 2 distinct values "
                f"(columns seen: {', '.join(names)}); pass --target COLUMN"
            )
        ranked = sorted(profile.target_candidates, key=lambda n: n in avoid)
        return profile.column(ranked[0])
    if target not in names:
        raise DataError(
            f"--target '{target}' is not a column of the data.{did_you_mean(target, names)} "
            f"Columns seen: {', '.join(names)}."
        )
    col = profile.column(target)
    if col.n_unique != 2:
        shown = ", ".join(repr(v) for v in col.top_values) + (
            ", ..." if col.n_unique > TOP_VALUES else ""
        )
        raise DataError(
            f"target '{target}' must have exactly 2 distinct values, "
            f"but has {col.n_unique}: [{shown}]"
        )
    return col


def _positive(col: ColumnProfile) -> Any:
    """The larger value of a numeric or bool target, else the less frequent one."""
    if col.dtype in ("int", "float", "bool"):
        return max(col.top_values)
    return col.top_values[1]


def _contract_entry(col: ColumnProfile, *, is_id: bool, unique: bool) -> dict[str, Any]:
    """A column's contract: its dtype and what was observed, widened for ids and codes.

    An id gets no range and no allowed list (new customers have new numbers), ``unique`` only
    for the id column; sentinel codes make the column nullable and become ``missing_values``.
    """
    codes = [] if is_id else list(col.missing_codes)
    entry: dict[str, Any] = {"dtype": col.dtype, "nullable": col.missing_rate > 0 or bool(codes)}
    if unique:
        entry["unique"] = True
    if col.dtype in ("int", "float") and col.min is not None and col.max is not None and not is_id:
        cast = int if col.dtype == "int" else float
        entry["min"], entry["max"] = cast(col.min), cast(col.max)
    if col.dtype in ("int", "str") and col.distinct_values and not is_id:
        entry["allowed"] = list(col.distinct_values)
    if codes:
        entry["missing_values"] = codes
    entry["description"] = f"observed {col.missing_rate:.1%} missing, {col.n_unique} distinct"
    return entry


def is_protected_name(name: str, words: Sequence[str] = DEFAULT_PROTECTED_WORDS) -> bool:
    """Whether column ``name`` reads as a protected attribute: some entry of ``words`` (one word
    or a phrase) appears as whole consecutive words of the name (``marital status`` in
    ``MaritalStatus``; ``age`` in ``AGE`` or ``applicant_age``, not in ``mortgage``)."""
    tokens = _tokens(name)
    for word in words:
        parts = _tokens(word)
        size = len(parts)
        if size and any(tokens[i : i + size] == parts for i in range(len(tokens) - size + 1)):
            return True
    return False


def _calendar(parts: Sequence[str], time_column: str | None, names: list[str]) -> dict[str, str]:
    """``features.calendar`` for the ``parts`` asked for, named ``time_<part>``."""
    if not parts:
        return {}
    accepted = list(CalendarPart.__args__)  # type: ignore[attr-defined]
    unknown = [p for p in parts if p not in accepted]
    if unknown:
        raise DataError(
            f"calendar parts {unknown} are not known; the parts are {', '.join(accepted)}"
        )
    if time_column is None:
        raise DataError(
            "calendar parts are computed from the time column, but no column holds dates or "
            "times (a date of birth is never the time column)"
        )
    chosen = {}
    for part in dict.fromkeys(parts):
        name = f"time_{part}"
        while name in names:
            name = f"calendar_{name}"
        chosen[name] = part
    return chosen


def starter_spec(
    profile: TableProfile,
    *,
    source: str,
    project: str,
    target: str | None = None,
    protected_words: Sequence[str] = DEFAULT_PROTECTED_WORDS,
    calendar: Sequence[str] = (),
) -> dict:
    """A starter spec as a plain dict for :func:`keel.spec.parse_spec`; review it before use.

    It trains as it is, safely: columns named like ``protected_words`` are ``protected`` (never
    features); every id candidate is excluded (the first unique one, by preference an id-like
    name, is ``data.id_column``); the first date column that is not protected is the time
    column and every other date is excluded; sentinel codes are ``missing_values``; the
    ``STARTER_GATES`` are set; ``reasons.texts`` is empty; ``reviewed: false``. Calendar parts
    of the time column are derived only for ``calendar`` (``hour``, ``night``, ...).

    Raises :class:`~keel.errors.DataError` when no target can be chosen, when ``target``
    is not a column, when the target does not hold exactly two values, or for calendar parts
    that cannot be made.
    """
    names = [c.name for c in profile.columns]
    protected = [n for n in names if n != target and is_protected_name(n, protected_words)]
    goal = _choose_target(profile, target, avoid=protected)
    protected = [n for n in protected if n != goal.name]
    taken = {goal.name, *protected}
    ids = [n for n in profile.id_candidates if n not in taken]
    id_column = _id_column(profile, ids)
    times = [n for n in profile.time_candidates if n not in taken]
    time_column = times[0] if times else None
    data: dict[str, Any] = {"source": source, "format": DataSpec(source=source).file_format()}
    if id_column:
        data["id_column"] = id_column
    if time_column:
        data["time_column"] = time_column
    data["duplicates"] = "drop"
    skipped = taken | set(ids) | set(times)
    text = [c for c in profile.columns if c.dtype == "str" and c.name not in skipped]
    features: dict[str, Any] = {
        "categorical": [c.name for c in text if c.categorical],
        "exclude": [n for n in ids if n != id_column]
        + times[1:]
        + [c.name for c in text if not c.categorical],
    }
    parts = _calendar(calendar, time_column, names)
    if parts:
        features["calendar"] = parts
    return {
        "project": project,
        "description": "Starter spec generated by `keel init` from the observed data; "
        "review every entry before use.",
        "reviewed": False,
        "seed": 42,
        "data": data,
        "contract": {
            "columns": {
                c.name: _contract_entry(c, is_id=c.name in ids, unique=c.name == id_column)
                for c in profile.columns
            }
        },
        "target": {"column": goal.name, "positive": _positive(goal)},
        "protected": protected,
        "features": features,
        "split": {"method": "time" if time_column else "stratified"},
        "tuning": {"trials": 20},
        "gates": dict(STARTER_GATES),
        "reasons": {"texts": {}},
    }


_ID_PREFERENCE = (
    "named as an id",
    "(nearly) unique values under",
    "(nearly) unique letter",
    "a row number",
)


def _id_column(profile: TableProfile, ids: list[str]) -> str | None:
    """The id column: a unique, complete id candidate, an id-like name first, then codes, then
    row numbers (the pandas index and card numbers last: they are not a record's key)."""

    def rank(name: str) -> int:
        reason = profile.id_reasons.get(name, "")
        hits = [i for i, p in enumerate(_ID_PREFERENCE) if reason.startswith(p)]
        return hits[0] if hits else len(_ID_PREFERENCE)

    unique = [
        n for n in ids if (c := profile.column(n)).n_unique == profile.rows and c.missing_rate == 0
    ]
    return min(unique, key=rank) if unique else None


def _commented(text: object) -> str:
    """``text`` as it may stand inside a YAML comment: a name holding a line break or any other
    unprintable character is shown escaped, so it can never end the comment and start YAML."""
    shown = str(text)
    return shown if shown.isprintable() else json.dumps(shown)


def _names(names: Sequence[str]) -> str:
    return ", ".join(_commented(name) for name in names)


def _review_notes(spec: dict, profile: TableProfile) -> list[str]:
    """What `keel init` decided that a reviewer must confirm, one comment line per decision.

    Every column name passes through :func:`_commented`; the rest is fixed text.
    """
    data, features, columns = spec["data"], spec["features"], spec["contract"]["columns"]
    excluded = features["exclude"]
    ids = [n for n in excluded if n in profile.id_reasons]
    dates = [n for n in excluded if columns[n]["dtype"] == "datetime"]
    text = [n for n in excluded if n not in ids and n not in dates]
    notes = []
    if spec["protected"]:
        notes.append(
            "#   - protected (never features; fairness is reported by them): "
            f"{_names(spec['protected'])}."
        )
        notes.append("#     Matched by name only: add any other, remove any that is not.")
    else:
        notes.append("#   - protected: none matched by name; add any (age, sex, race, zip, ...).")
    for name in ids:
        notes.append(f"#   - excluded as an id: {_commented(name)} ({profile.id_reasons[name]}).")
    if dates:
        notes.append(f"#   - excluded dates (a date is never a feature as it is): {_names(dates)}.")
    if text:
        notes.append(
            f"#   - excluded as free text (over {MAX_CATEGORIES} values, mostly rare): "
            f"{_names(text)}."
        )
    if data.get("time_column") and not features.get("calendar"):
        notes.append("#   - no calendar parts of the time column are features; ask for them with")
        notes.append("#     features.calendar (or keel init --calendar hour,night,...).")
    coded = [(n, c["missing_values"]) for n, c in columns.items() if c.get("missing_values")]
    for name, codes in coded:
        notes.append(
            f"#   - {_commented(name)}: {', '.join(map(str, codes))} read as missing "
            "(codes far from the other values); confirm each means 'unknown'."
        )
    return notes


def render_spec_yaml(spec: dict, profile: TableProfile) -> str:
    """The spec as YAML under a comment block of what to review; deterministic (no dates).

    The body is written by the YAML serializer; names in the comments pass through
    :func:`_commented` (a column named with a newline once injected YAML here).
    """
    target = spec["target"]
    data = spec["data"]
    header = [
        f"# Starter spec generated by `keel init` from {_commented(data['source'])}",
        f"# ({profile.rows} rows, {len(profile.columns)} columns). It trains as it is, but a",
        "# version trained from it fails the `spec_reviewed` gate, so it cannot be approved,",
        "# until a person has checked every entry below and set `reviewed: true`. Check:",
        f"#   - target {_commented(target['column'])!r}: "
        f"positive class taken as {target['positive']!r};",
        "#     confirm it is the adverse outcome the model should score.",
        f"#   - id column: {_commented(data.get('id_column', 'none found'))}; "
        f"time column: {_commented(data.get('time_column', 'none found'))}.",
        *_review_notes(spec, profile),
        "#   - contract min/max and allowed values were taken from the observed data;",
        "#     widen them to what valid future data may hold.",
        "#   - gates (a failing gate blocks approval), chosen as:",
        *(f"#       {note}" for note in _GATE_NOTES),
        "#   - reasons.texts: the words an applicant is told for each feature. None are",
        "#     invented: until you write them, a reason is the feature's name.",
    ]
    body = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if (
        yaml.safe_load(body) != spec
    ):  # a name YAML folds (NEL, U+2028) is written escaped, so it reads back verbatim
        body = yaml.safe_dump(spec, sort_keys=False, allow_unicode=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body
