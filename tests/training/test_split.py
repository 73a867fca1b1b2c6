"""Tests for keel.training.split: stratified and time splits, and the checks on their parts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from keel.errors import TrainingError
from keel.spec import SplitSpec
from keel.training.split import (
    AUTO_FOLDS,
    SMALL_MINORITY,
    SMALL_ROWS,
    Split,
    fold_count,
    split_rows,
)


def _labels(n: int, rate: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, size=int(round(n * rate)), replace=False)] = 1
    return y


def _parts(split: Split) -> list[np.ndarray]:
    return [split.train, split.validation, split.test]


@pytest.mark.parametrize(
    ("n", "test_size", "validation_size"),
    [
        (1000, 0.2, 0.2),
        (1001, 0.25, 0.15),
        (737, 0.1, 0.3),
        (2000, 0.3, 0.1),
    ],
)
def test_stratified_sizes_match_the_spec_fractions(
    n: int, test_size: float, validation_size: float
) -> None:
    y = _labels(n, 0.3)
    split = split_rows(y, SplitSpec(test_size=test_size, validation_size=validation_size), seed=7)
    sizes = split.sizes()
    assert abs(sizes["test"] - n * test_size) <= 1
    assert abs(sizes["validation"] - n * validation_size) <= 1
    assert abs(sizes["train"] - n * (1 - test_size - validation_size)) <= 1
    assert sum(sizes.values()) == n


def test_stratified_parts_are_disjoint_sorted_and_cover_every_row() -> None:
    y = _labels(900, 0.2)
    split = split_rows(y, SplitSpec(), seed=1)
    together = np.concatenate(_parts(split))
    assert len(together) == len(np.unique(together)) == 900
    np.testing.assert_array_equal(np.sort(together), np.arange(900))
    for rows in _parts(split):
        np.testing.assert_array_equal(rows, np.sort(rows))


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_stratified_class_rate_is_close_in_every_part(rate: float) -> None:
    y = _labels(2000, rate, seed=3)
    split = split_rows(y, SplitSpec(test_size=0.2, validation_size=0.2), seed=3)
    for rows in _parts(split):
        # Stratification keeps each part within about one row of the overall rate.
        assert abs(y[rows].mean() - rate) <= 1.5 / len(rows)


def test_same_seed_gives_the_same_split_and_another_seed_a_different_one() -> None:
    y = _labels(500, 0.3)
    spec = SplitSpec()
    a, b, c = (
        split_rows(y, spec, seed=11),
        split_rows(y, spec, seed=11),
        split_rows(y, spec, seed=12),
    )
    for first, second in zip(_parts(a), _parts(b), strict=True):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(a.test, c.test)
    assert not np.array_equal(a.validation, c.validation)


def _times(n: int, *, tz: str | None = None, seed: int = 0) -> pd.Series:
    """Unique hourly times in shuffled row order."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=n, freq="h", tz=tz)
    return pd.Series(stamps[rng.permutation(n)])


def _assert_ordered(split: Split, time: pd.Series) -> None:
    train, validation, test = (time.iloc[rows] for rows in _parts(split))
    assert train.max() < validation.min()
    assert validation.max() < test.min()


def test_time_split_by_fractions_orders_the_parts_and_matches_sizes() -> None:
    n = 1000
    time = _times(n)
    y = _labels(n, 0.3)
    split = split_rows(
        y, SplitSpec(method="time", test_size=0.2, validation_size=0.25), seed=0, time=time
    )
    _assert_ordered(split, time)
    sizes = split.sizes()
    assert abs(sizes["test"] - 200) <= 1
    assert abs(sizes["validation"] - 250) <= 1
    assert sum(sizes.values()) == n
    np.testing.assert_array_equal(np.sort(np.concatenate(_parts(split))), np.arange(n))


def test_time_split_ignores_the_seed() -> None:
    time, y = _times(300), _labels(300, 0.4)
    spec = SplitSpec(method="time")
    a, b = split_rows(y, spec, seed=0, time=time), split_rows(y, spec, seed=99, time=time)
    for first, second in zip(_parts(a), _parts(b), strict=True):
        np.testing.assert_array_equal(first, second)


def test_time_split_by_explicit_dates_uses_the_boundaries() -> None:
    n = 24 * 30  # 30 days, hourly
    time = _times(n)
    y = _labels(n, 0.3)
    spec = SplitSpec(
        method="time",
        validation_start=dt.datetime(2024, 1, 20),
        test_start=dt.datetime(2024, 1, 25),
    )
    split = split_rows(y, spec, seed=0, time=time)
    _assert_ordered(split, time)
    assert time.iloc[split.train].max() < pd.Timestamp("2024-01-20")
    assert time.iloc[split.validation].min() == pd.Timestamp("2024-01-20")
    assert time.iloc[split.test].min() == pd.Timestamp("2024-01-25")
    assert split.sizes() == {"train": 19 * 24, "validation": 5 * 24, "test": 6 * 24}


def test_time_split_accepts_a_time_column_of_text() -> None:
    time = _times(200)
    y = _labels(200, 0.5)
    spec = SplitSpec(method="time")
    as_text = split_rows(y, spec, seed=0, time=time.dt.strftime("%Y-%m-%d %H:%M:%S"))
    as_times = split_rows(y, spec, seed=0, time=time)
    for first, second in zip(_parts(as_text), _parts(as_times), strict=True):
        np.testing.assert_array_equal(first, second)


def test_time_split_keeps_ties_in_one_part() -> None:
    # Four rows per day: the boundary day must not be cut in two.
    days = pd.Series(np.repeat(pd.date_range("2024-03-01", periods=50, freq="D"), 4))
    y = _labels(200, 0.5)
    split = split_rows(
        y, SplitSpec(method="time", test_size=0.21, validation_size=0.21), seed=0, time=days
    )
    _assert_ordered(split, days)


@pytest.mark.parametrize("tz", ["UTC", "Europe/Lisbon", "America/New_York"])
def test_time_split_by_fractions_with_tz_aware_times(tz: str) -> None:
    time = _times(600, tz=tz)
    y = _labels(600, 0.3)
    split = split_rows(y, SplitSpec(method="time"), seed=0, time=time)
    _assert_ordered(split, time)
    assert abs(split.sizes()["test"] - 120) <= 1


def test_time_split_by_naive_dates_on_tz_aware_times_reads_dates_in_that_zone() -> None:
    time = _times(24 * 30, tz="America/New_York")
    y = _labels(24 * 30, 0.3)
    spec = SplitSpec(
        method="time",
        validation_start=dt.datetime(2024, 1, 20),
        test_start=dt.datetime(2024, 1, 25),
    )
    split = split_rows(y, spec, seed=0, time=time)
    _assert_ordered(split, time)
    assert time.iloc[split.validation].min() == pd.Timestamp("2024-01-20", tz="America/New_York")
    assert time.iloc[split.test].min() == pd.Timestamp("2024-01-25", tz="America/New_York")


def test_time_split_by_aware_dates_on_aware_times_of_another_zone() -> None:
    time = _times(24 * 30, tz="UTC")
    y = _labels(24 * 30, 0.3)
    plus_two = dt.timezone(dt.timedelta(hours=2))
    spec = SplitSpec(
        method="time",
        validation_start=dt.datetime(2024, 1, 20, tzinfo=plus_two),
        test_start=dt.datetime(2024, 1, 25, tzinfo=plus_two),
    )
    split = split_rows(y, spec, seed=0, time=time)
    _assert_ordered(split, time)
    assert time.iloc[split.validation].min() == pd.Timestamp("2024-01-19 22:00", tz="UTC")


def test_time_split_refuses_aware_dates_on_naive_times_with_a_clear_error() -> None:
    time = _times(24 * 30)
    y = _labels(24 * 30, 0.3)
    utc = dt.UTC
    spec = SplitSpec(
        method="time",
        validation_start=dt.datetime(2024, 1, 20, tzinfo=utc),
        test_start=dt.datetime(2024, 1, 25, tzinfo=utc),
    )
    with pytest.raises(TrainingError, match=r"time zone"):
        split_rows(y, spec, seed=0, time=time)


def test_time_split_needs_the_time_column() -> None:
    with pytest.raises(TrainingError, match=r"a time split needs the time column"):
        split_rows(_labels(100, 0.5), SplitSpec(method="time"), seed=0)


def test_time_split_refuses_missing_times() -> None:
    time = _times(100).astype("datetime64[ns]")
    time.iloc[[3, 50]] = pd.NaT
    with pytest.raises(TrainingError, match=r"the time column has 2 missing value\(s\)"):
        split_rows(_labels(100, 0.5), SplitSpec(method="time"), seed=0, time=time)


def test_time_split_with_dates_after_the_data_reports_the_empty_part() -> None:
    time = _times(24 * 10)
    spec = SplitSpec(
        method="time", validation_start=dt.datetime(2024, 1, 5), test_start=dt.datetime(2024, 6, 1)
    )
    with pytest.raises(
        TrainingError, match=r"leaves the test part empty .* data run from 2024-01-01"
    ):
        split_rows(_labels(240, 0.5), spec, seed=0, time=time)


def test_time_split_with_dates_before_the_data_reports_the_empty_train_part() -> None:
    time = _times(24 * 10)
    spec = SplitSpec(
        method="time", validation_start=dt.datetime(2023, 1, 1), test_start=dt.datetime(2024, 1, 5)
    )
    with pytest.raises(TrainingError, match=r"leaves the train part empty"):
        split_rows(_labels(240, 0.5), spec, seed=0, time=time)


def test_time_split_with_one_class_in_the_test_part_is_refused() -> None:
    n = 400
    time = pd.Series(pd.date_range("2024-01-01", periods=n, freq="h"))
    y = np.zeros(n, dtype=int)
    y[:300:3] = 1  # no positive in the last fifth of the period
    with pytest.raises(TrainingError, match=r"the test split \(80 rows\) holds one class only"):
        split_rows(y, SplitSpec(method="time"), seed=0, time=time)


def test_stratified_split_with_too_few_positives_for_a_part_is_refused() -> None:
    y = np.zeros(200, dtype=int)
    y[:2] = 1
    with pytest.raises(TrainingError, match=r"holds one class only"):
        split_rows(y, SplitSpec(), seed=0)


def test_stratified_split_with_a_single_positive_is_a_training_error() -> None:
    y = np.zeros(200, dtype=int)
    y[5] = 1
    with pytest.raises(
        TrainingError, match=r"cannot split 200 rows by class \(rows per class: \{0: 199, 1: 1\}\)"
    ):
        split_rows(y, SplitSpec(), seed=0)


def test_stratified_split_too_small_for_the_second_cut_is_a_training_error() -> None:
    # Ten rows, two positives: the test part takes one, leaving one for train and validation.
    y = np.zeros(10, dtype=int)
    y[:2] = 1
    with pytest.raises(TrainingError, match=r"cannot split 10 rows by class .* use more data"):
        split_rows(y, SplitSpec(test_size=0.3), seed=0)


def _delayed_days(days: int, per_day: int = 4) -> tuple[pd.Series, np.ndarray, pd.Series]:
    """``per_day`` rows a day from 2024-01-01; card i's row on day d; day d's row 0 is positive."""
    time = pd.Series(
        pd.Timestamp("2024-01-01 10:00")
        + pd.to_timedelta(np.repeat(np.arange(days), per_day), unit="D")
    )
    y = np.tile(np.r_[1, np.zeros(per_day - 1, dtype=int)], days)
    card = pd.Series(np.tile(np.arange(per_day), days) + 100 * np.repeat(np.arange(days), per_day))
    return time, y, card


def test_delayed_split_trains_waits_and_tests_in_whole_days() -> None:
    time, y, card = _delayed_days(40)
    spec = SplitSpec(
        method="delayed",
        train_start=dt.date(2024, 1, 22),
        train_days=3,
        delay_days=2,
        test_days=4,
        validation_folds=2,
    )
    split = split_rows(y, spec, seed=0, time=time, entity=card)
    day = time.dt.day
    assert sorted(set(day[split.train])) == [22, 23, 24]
    assert sorted(set(day[split.test])) == [27, 28, 29, 30]  # 25 and 26 wait for labels
    # Fold k starts delay + k * test days (2 + 4k) before the 22nd: fold 1 validates on the
    # four days that end with the training window, fold 2 on the four before.
    assert [sorted(set(day[v])) for _, v in split.folds] == [[21, 22, 23, 24], [17, 18, 19, 20]]
    assert [sorted(set(day[t])) for t, _ in split.folds] == [[16, 17, 18], [12, 13, 14]]
    np.testing.assert_array_equal(
        split.validation, np.sort(np.concatenate([v for _, v in split.folds]))
    )


def test_delayed_split_leaves_out_cards_already_known_to_be_compromised() -> None:
    """A card already known to be compromised is left out of a test day.

    Known: a positive in training, or on the day delay + 1 before that test day.
    """
    time, y, card = _delayed_days(20)
    card[:] = np.tile(
        np.arange(4), 20
    )  # the same four cards every day; card 0 is positive every day
    y[:] = 0
    y[(time.dt.day == 2) & (card == 1)] = 1  # in training
    y[(time.dt.day == 5) & (card == 2)] = 1
    y[(time.dt.day == 7) & (card == 3)] = 1
    y[(time.dt.day == 12) & (card == 0)] = 1
    spec = SplitSpec(
        method="delayed",
        train_start=dt.date(2024, 1, 1),
        train_days=3,
        delay_days=2,
        test_days=5,
        validation_folds=1,
        known_entity="card",
    )
    y_fold = y.copy()
    y_fold[(time.dt.day.isin([1, 2])) & (card == 0)] = (
        1  # the fold (train from Dec 25) sees no row before Jan 1
    )
    with pytest.raises(
        TrainingError, match="the delayed split starting 2023-12-25 has an empty train window"
    ):
        split_rows(y_fold, spec, seed=0, time=time, entity=card)
    spec = spec.model_copy(update={"train_start": dt.date(2024, 1, 6), "test_days": 5})
    y[(time.dt.day == 7) & (card == 2)] = 1  # a positive in the new training window (days 6-8)
    y[(time.dt.day == 11) & (card == 3)] = 1
    y[(time.dt.day == 13) & (card == 1)] = 1
    y[(time.dt.day == 1) & (card == 1)] = 1  # the fold trains on Jan 1 only (from Dec 30)
    split = split_rows(y, spec, seed=0, time=time, entity=card)
    test = pd.DataFrame({"day": time.dt.day[split.test], "card": card[split.test]})
    by_day = test.groupby("day")["card"].apply(lambda c: sorted(set(c))).to_dict()
    # Known from training (days 6-8): cards 2 and 3. Test days 11-15; day d adds the positives
    # of day d - 3: card 3's of day 11 (already known), card 0's of day 12 from day 15 on; card
    # 1's of day 13 is not known before day 16, so card 1 stays in every test day.
    assert by_day == {11: [0, 1], 12: [0, 1], 13: [0, 1], 14: [0, 1], 15: [1]}


def test_delayed_split_names_missing_history() -> None:
    time, y, card = _delayed_days(10)
    spec = SplitSpec(
        method="delayed", train_start=dt.date(2024, 1, 8), train_days=3, delay_days=2, test_days=2
    )
    with pytest.raises(TrainingError, match="has an empty test window"):
        split_rows(y, spec, seed=0, time=time)


def test_delayed_folds_validate_only_on_days_labelled_before_the_delay_period() -> None:
    """The handbook's layout: train 07-25..07-31, delay 08-01..08-07, test 08-08..08-14.

    Fold 1 trains on 07-11..07-17 and validates on 07-25..07-31; no fold validates on a day
    of the delay week, whose labels are not known when the model is trained.
    """
    days = 60  # 2018-06-20 to 2018-08-18
    time = pd.Series(
        pd.Timestamp("2018-06-20 12:00") + pd.to_timedelta(np.repeat(np.arange(days), 6), unit="D")
    )
    y = np.tile([1, 0, 0, 0, 0, 0], days)
    spec = SplitSpec(
        method="delayed",
        train_start=dt.date(2018, 7, 25),
        train_days=7,
        delay_days=7,
        test_days=7,
        validation_folds=3,
    )
    split = split_rows(y, spec, seed=0, time=time)
    day = time.dt.date

    def span(rows: np.ndarray) -> tuple[str, str]:
        return str(day[rows].min()), str(day[rows].max())

    assert span(split.train) == ("2018-07-25", "2018-07-31")
    assert span(split.test) == ("2018-08-08", "2018-08-14")
    assert [(span(t), span(v)) for t, v in split.folds] == [
        (("2018-07-11", "2018-07-17"), ("2018-07-25", "2018-07-31")),
        (("2018-07-04", "2018-07-10"), ("2018-07-18", "2018-07-24")),
        (("2018-06-27", "2018-07-03"), ("2018-07-11", "2018-07-17")),
    ]
    last_train_day = day[split.train].max()
    delay = (day > last_train_day) & (day < day[split.test].min())
    assert delay.sum() == 7 * 6
    for train, valid in split.folds:
        assert day[valid].max() <= last_train_day
        assert day[train].max() < day[valid].min()  # each fold's own delay lies in between
        assert not delay[valid].any()
    assert not delay[split.validation].any()


def _pool(split: Split) -> np.ndarray:
    return np.sort(np.concatenate([split.train, split.validation]))


def test_auto_folds_follow_the_rarer_class_and_the_size_of_the_pool() -> None:
    assert fold_count("auto", _labels(800, 0.3)) == AUTO_FOLDS  # a 1,000-row table's pool
    # The UCI credit example's pool: 24,000 rows, about 5,300 defaults.
    assert fold_count("auto", _labels(24_000, 0.22)) == 1
    rare = _labels(SMALL_ROWS, (SMALL_MINORITY - 100) / SMALL_ROWS)
    assert fold_count("auto", rare) == 1  # rare positives, but too many rows for K fits
    assert fold_count("auto", _labels(5000, (SMALL_MINORITY - 1) / 5000)) == AUTO_FOLDS
    assert fold_count("auto", _labels(5000, SMALL_MINORITY / 5000)) == 1
    # Many positives, few negatives: the negatives are the rarer class.
    assert fold_count("auto", 1 - _labels(2000, 0.1)) == AUTO_FOLDS
    assert fold_count(3, _labels(50_000, 0.5)) == 3
    assert fold_count(1, _labels(500, 0.5)) == 1


def test_stratified_folds_cover_the_pool_stratified_and_leave_the_test_rows_alone() -> None:
    y = _labels(1000, 0.2, seed=4)
    single = split_rows(y, SplitSpec(), seed=9)
    split = split_rows(y, SplitSpec(), seed=9, folds="auto")
    np.testing.assert_array_equal(split.test, single.test)
    pool = _pool(single)
    np.testing.assert_array_equal(split.train, pool)
    np.testing.assert_array_equal(split.validation, pool)
    assert len(split.folds) == AUTO_FOLDS
    held_out = np.concatenate([v for _, v in split.folds])
    np.testing.assert_array_equal(np.sort(held_out), pool)  # each pool row validates once
    for train, valid in split.folds:
        assert not set(train) & set(valid)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), pool)
        assert abs(y[valid].mean() - 0.2) <= 1.5 / len(valid)
    again = split_rows(y, SplitSpec(), seed=9, folds="auto")
    other = split_rows(y, SplitSpec(), seed=10, folds="auto")
    for (_, a), (_, b) in zip(split.folds, again.folds, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(split.folds[0][1], other.folds[0][1])


def test_a_large_pool_keeps_the_single_split_unless_folds_are_forced() -> None:
    y = _labels(40_000, 0.25)
    assert split_rows(y, SplitSpec(), seed=0, folds="auto").folds == ()
    forced = split_rows(y, SplitSpec(), seed=0, folds=3)
    assert len(forced.folds) == 3


def test_stratified_folds_refuse_a_class_smaller_than_the_folds() -> None:
    y = np.zeros(400, dtype=int)
    y[:8] = 1  # 2 in test, 2 in validation, 4 in train: 6 in the pool
    with pytest.raises(TrainingError, match=r"7 stratified folds need at least 7 rows of each"):
        split_rows(y, SplitSpec(), seed=0, folds=7)


def test_time_folds_validate_each_on_a_later_block_than_they_train_on() -> None:
    n = 1000
    time = _times(n, seed=2)
    y = _labels(n, 0.3)
    single = split_rows(y, SplitSpec(method="time"), seed=0, time=time)
    split = split_rows(y, SplitSpec(method="time"), seed=0, time=time, folds=4)
    np.testing.assert_array_equal(split.test, single.test)
    np.testing.assert_array_equal(split.train, _pool(single))
    assert len(split.folds) == 4
    starts = []
    for train, valid in split.folds:
        assert time.iloc[train].max() < time.iloc[valid].min()
        assert time.iloc[valid].max() < time.iloc[split.test].min()
        starts.append(time.iloc[valid].min())
    assert starts == sorted(starts, reverse=True)  # the latest fold comes first
    # Expanding windows over five blocks of 160 rows: fold j trains on j blocks.
    assert sorted(len(t) for t, _ in split.folds) == [160, 320, 480, 640]
    assert all(len(v) == 160 for _, v in split.folds)
    first_block = set(_pool(single)) - set(split.validation)
    assert len(first_block) == 160


def test_time_folds_keep_rows_of_one_time_in_one_block() -> None:
    days = pd.Series(np.repeat(pd.date_range("2024-03-01", periods=50, freq="D"), 4))
    y = _labels(200, 0.5)
    split = split_rows(y, SplitSpec(method="time"), seed=0, time=days, folds=3)
    for train, valid in split.folds:
        assert days.iloc[train].max() < days.iloc[valid].min()


def test_time_folds_on_too_few_distinct_times_name_the_empty_part() -> None:
    days = pd.Series(np.repeat(pd.date_range("2024-03-01", periods=4, freq="D"), [5, 85, 5, 5]))
    y = _labels(100, 0.5)
    spec = SplitSpec(method="time", test_size=0.05, validation_size=0.05)
    with pytest.raises(TrainingError, match=r"time-ordered folds leave fold \d with an empty"):
        split_rows(y, spec, seed=0, time=days, folds=4)
