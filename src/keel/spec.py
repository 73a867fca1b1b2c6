"""The project spec (``keel.yaml``): pydantic models and their loader.

A spec is one frozen value handed down to every stage. Loading it either gives a
fully checked :class:`ProjectSpec` or raises :class:`~keel.errors.SpecError` naming
each bad key path, what it accepts and, for a near miss, the key that was meant.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from keel.errors import SpecError, did_you_mean
from keel.expressions import columns
from keel.io.tables import table_format

Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnContract(_Strict):
    """What one column must hold; values are checked before anything trains."""

    dtype: Literal["int", "float", "str", "bool", "datetime"]
    nullable: bool = False
    unique: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[Scalar] | None = None
    # Codes that mean "unknown" (e.g. 96 and 98, -1, 999): read as missing before every check,
    # in training and in serving alike. A column with such codes must be nullable.
    missing_values: list[Scalar] = Field(default_factory=list)
    description: str | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ColumnContract:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min <= max` must hold, but got min={self.min}, max={self.max}")
        if (self.min is not None or self.max is not None) and self.dtype not in ("int", "float"):
            raise ValueError(f"min/max apply to int or float columns, not dtype '{self.dtype}'")
        if self.missing_values and not self.nullable:
            raise ValueError("a column with missing_values must be nullable: true")
        return self


class ContractSpec(_Strict):
    """The data contract: every column the project relies on."""

    columns: dict[str, ColumnContract] = Field(min_length=1)
    extra_columns: Literal["drop", "error"] = "drop"
    failure_sample: int = Field(default=5, ge=1, le=100)


class DataSpec(_Strict):
    """Where the data is and how its known quirks are handled (explicitly, never silently)."""

    source: str
    format: Literal["csv", "parquet"] | None = None
    id_column: str | None = None
    time_column: str | None = None
    duplicates: Literal["keep", "drop", "error"] = "error"
    recode: dict[str, dict[Scalar, Scalar]] = Field(default_factory=dict)
    until: dt.datetime | None = (
        None  # only rows with time_column before this are read (keel retrain --as-of)
    )
    max_columns: int = Field(
        default=10_000, ge=1
    )  # a wider table is refused before its rows are parsed

    @model_validator(mode="after")
    def _until_needs_time(self) -> DataSpec:
        if self.until is not None and not self.time_column:
            raise ValueError(
                "data.until keeps the rows before a time, so it needs data.time_column"
            )
        return self

    def file_format(self) -> Literal["csv", "parquet"]:
        """The declared format, or the one implied by the source's suffix."""
        implied = self.format or table_format(self.source)
        if implied:
            return implied
        raise SpecError(
            f"data.format: cannot tell the format of '{self.source}' from its name; "
            "set data.format to 'csv' or 'parquet'"
        )


class TargetSpec(_Strict):
    """The label and which of its values is the positive (adverse) class."""

    column: str
    positive: Scalar = 1
    threshold: float = Field(default=0.5, gt=0, lt=1)


_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_us(text: str) -> int:
    """Microseconds in a duration such as ``90s``, ``15m``, ``1h``, ``7d`` or ``2w``.

    ``0`` is none.
    """
    if text == "0":
        return 0
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"'{text}' is not a duration; write a whole number and a unit s, m, h, d or w "
            "(for example 1h, 7d), or 0"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] * 1_000_000


def _check_duration(text: str) -> str:
    duration_us(text)
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
WindowFunction = Literal["count", "sum", "mean", "std", "min", "max", "distinct_count"]


class Aggregation(_Strict):
    """One aggregate of an entity's events: ``count`` counts events; the others read ``column``."""

    function: WindowFunction
    column: str | None = None

    @model_validator(mode="after")
    def _column(self) -> Aggregation:
        if self.function != "count" and self.column is None:
            raise ValueError(f"function '{self.function}' needs a column to aggregate")
        return self


class WindowGroup(_Strict):
    """Aggregations of one entity's events over time windows ending ``delay`` before each row.

    ``at_or_before`` counts events before the row's cutoff and, with no delay, the row
    itself; ``before`` only events strictly before the cutoff. Other rows at exactly the
    row's own time are never counted, because their order is arbitrary.
    """

    entity: str
    windows: list[Duration] = Field(min_length=1)
    delay: Duration = "0"
    boundary: Literal["before", "at_or_before"] = "at_or_before"
    aggregations: dict[str, Aggregation] = Field(min_length=1)

    @model_validator(mode="after")
    def _positive_windows(self) -> WindowGroup:
        if "0" in self.windows:
            raise ValueError("a window must be longer than 0")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows repeat: {self.windows}")
        return self


CalendarPart = Literal["weekend", "night", "hour", "day_of_week"]


@dataclass(frozen=True)
class WindowFeature:
    """One point-in-time feature: ``function`` of ``column`` over the entity's events.

    The events are those in ``(cutoff - window, cutoff]`` (``before``: ``cutoff`` itself
    excluded), ``cutoff = time - delay``.
    """

    name: str
    group: str
    entity: str
    function: str
    column: str | None
    window_us: int
    delay_us: int
    boundary: str


class FeatureSpec(_Strict):
    """Which columns become model inputs. Protected attributes never do.

    Besides the contract's columns: ``windows`` (point-in-time aggregates per entity, named
    ``<group>_<aggregation>_<window>``), ``calendar`` parts of the time column and
    ``derived`` expressions over any of them.
    """

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    windows: dict[str, WindowGroup] = Field(default_factory=dict)
    calendar: dict[str, CalendarPart] = Field(default_factory=dict)
    derived: dict[str, str] = Field(default_factory=dict)


class SplitSpec(_Strict):
    """Train/validation/test split: stratified random, by time, or ``delayed``.

    ``delayed`` is the fraud handbook's protocol.

    ``delayed``: train on ``train_days`` from ``train_start``, leave ``delay_days`` unused
    (their labels are not known yet when the model goes live), test on the ``test_days``
    after. Tuning scores each candidate on ``validation_folds`` earlier copies of that
    layout (the Fraud Detection Handbook's): fold k starts ``delay_days + k * test_days``
    days before ``train_start``, so fold 1 validates on the ``test_days`` that end with the
    training window and no fold validates on the delay period, whose labels are not known at
    training time. With ``known_entity``, rows of an entity
    whose positive label is already known by an evaluation day (from the training window,
    or from the day ``delay_days + 1`` before) are left out of that day: those cards are
    already blocked.
    """

    method: Literal["stratified", "time", "delayed"] = "stratified"
    test_size: float = Field(default=0.2, gt=0, lt=0.5)
    validation_size: float = Field(default=0.2, gt=0, lt=0.5)
    validation_start: dt.datetime | None = None
    test_start: dt.datetime | None = None
    train_start: dt.date | None = None
    train_days: int = Field(default=7, ge=1)
    delay_days: int = Field(default=7, ge=0)
    test_days: int = Field(default=7, ge=1)
    validation_folds: int = Field(default=3, ge=1, le=52)
    known_entity: str | None = None

    @model_validator(mode="after")
    def _dates(self) -> SplitSpec:
        dates = (self.validation_start, self.test_start)
        if self.method != "time" and any(dates):
            raise ValueError("validation_start/test_start apply only to method 'time'")
        if (self.validation_start is None) != (self.test_start is None):
            raise ValueError("give both validation_start and test_start, or neither")
        if self.validation_start and self.test_start and self.validation_start >= self.test_start:
            raise ValueError("`validation_start < test_start` must hold")
        if self.method == "delayed" and self.train_start is None:
            raise ValueError(
                "method 'delayed' needs train_start, the first day of the training window"
            )
        if self.method != "delayed" and (
            self.train_start is not None or self.known_entity is not None
        ):
            raise ValueError("train_start and known_entity apply only to method 'delayed'")
        return self


class FloatRange(_Strict):
    """A float search range; ``log`` samples on a log scale."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"`low <= high` must hold, but got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, but got low={self.low}")
        return self


class IntRange(_Strict):
    """An integer search range, both ends included."""

    low: int
    high: int

    @model_validator(mode="after")
    def _order(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"`low <= high` must hold, but got low={self.low}, high={self.high}")
        return self


class LogisticSpace(_Strict):
    """Search space of the regularized logistic baseline (L2, standardized inputs)."""

    C: FloatRange = FloatRange(low=1e-4, high=10.0, log=True)
    max_iter: int = Field(default=1000, ge=10)


class LightGBMSpace(_Strict):
    """Search space of the gradient-boosting family; early stopping picks the rounds."""

    num_leaves: IntRange = IntRange(low=8, high=64)
    learning_rate: FloatRange = FloatRange(low=0.01, high=0.15, log=True)
    min_child_samples: IntRange = IntRange(low=20, high=300)
    feature_fraction: FloatRange = FloatRange(low=0.5, high=1.0)
    bagging_fraction: FloatRange = FloatRange(low=0.5, high=1.0)
    lambda_l2: FloatRange = FloatRange(low=1e-3, high=30.0, log=True)
    max_rounds: int = Field(default=2000, ge=10)
    early_stopping_rounds: int = Field(default=50, ge=5)
    # Histogram bins per feature. More bins find finer thresholds (amounts, ratios) at some cost
    # in time.
    max_bin: int = Field(default=255, ge=15, le=65535)
    monotone: dict[str, Literal[-1, 0, 1]] = Field(default_factory=dict)
    # On a Dask cluster, fit the chosen parameters data-parallel over the workers (lightgbm.dask)
    # for the tuned rounds. The trees then differ slightly from an in-process fit: see
    # keel.training.distributed.
    distributed_fit: bool = False


Family = Literal["logistic", "lightgbm"]


def _every_family() -> list[Family]:
    return ["logistic", "lightgbm"]


class ModelsSpec(_Strict):
    """The model families to try, each with its search space."""

    families: list[Family] = Field(default_factory=_every_family, min_length=1)
    logistic: LogisticSpace = LogisticSpace()
    lightgbm: LightGBMSpace = LightGBMSpace()


def _check_storage(url: str) -> str:
    if not re.match(r"^[A-Za-z][A-Za-z0-9+]*://\S+$", url):
        raise ValueError("not a database URL; write one such as postgresql+psycopg2://user@host/db")
    return url


class TuningSpec(_Strict):
    """The tuning budget per family: a number of trials and/or seconds.

    ``storage``: the SQLAlchemy URL of the Optuna study database when trials run on a Dask
    cluster (``postgresql+psycopg2://user@host/db``; keep the password out of it, in
    ``~/.pgpass`` or ``PGPASSWORD``, because the spec is logged with every run). Every worker
    must reach it. A ``--cluster local`` run defaults to a SQLite file in a temporary folder;
    in process, trials need no database.
    """

    trials: int = Field(default=30, ge=1)
    # How candidates are scored. "auto": K-fold cross-validation on the train and validation
    # rows, the final model then refit on all of them (stratified; time-ordered for a time
    # split), when the data are small, a single validation split otherwise. An integer K >= 2
    # forces K folds; 1 forces a single split.
    # (The delayed split always uses its own weekly folds.)
    folds: Literal["auto"] | Annotated[int, Field(ge=1, le=20)] = "auto"
    # How a family is chosen: "one_se" takes the simplest family whose fold mean is within one
    # standard error of the best (logistic is simpler than boosting); "best" takes the best mean.
    selection: Literal["one_se", "best"] = "one_se"
    # What the chosen candidate is finally fit on, after a single validation split: "pool"
    # refits it on the train and validation rows together (boosting for the rounds early
    # stopping chose), so the model learns from every row but the test's; "train" keeps the
    # fit on the train rows. K-fold tuning always refits on the pool; a distributed LightGBM
    # fit keeps its fit on the train rows.
    refit: Literal["pool", "train"] = "pool"
    timeout_seconds: float | None = Field(default=None, gt=0)
    metric: Literal["auc", "average_precision", "log_loss"] = "auc"
    pruning: bool = True
    threads: int = Field(default=2, ge=1)
    storage: Annotated[str, AfterValidator(_check_storage)] | None = None

    @property
    def maximize(self) -> bool:
        """Whether a larger value of the tuning metric is better (log loss is the one minimized)."""
        return self.metric != "log_loss"


class PrecisionAtK(_Strict):
    """Precision among the k entities scored highest each day (card precision@k for fraud).

    ``remove_detected`` (the Fraud Detection Handbook's rule): an entity found positive in an
    earlier day's top k is blocked, so it leaves every later day. Off, each day stands alone.
    """

    entity: str
    k: int = Field(default=100, ge=1)
    remove_detected: bool = True
    name: str = Field(default="entity", pattern=r"^[a-z][a-z0-9_]{0,30}$")

    def metric(self) -> str:
        """The metric's name, for example ``card_precision_at_100``."""
        return f"{self.name}_precision_at_{self.k}"


class EvaluationSpec(_Strict):
    """Extra test metrics: per calendar day of the test rows, and precision@k entities per day."""

    by_day: bool = False
    precision_at_k: PrecisionAtK | None = None


class GatesSpec(_Strict):
    """Validation thresholds the spec adds.

    The governance policy's floors apply too (a spec only tightens).
    """

    min_auc: float | None = Field(default=None, ge=0, le=1)
    min_ks: float | None = Field(default=None, ge=0, le=1)
    max_ece: float | None = Field(default=None, ge=0, le=1)
    max_train_test_gap: float | None = Field(default=None, ge=0, le=1)
    max_psi: float | None = Field(default=None, ge=0)
    # The chosen model's test AUC minus the logistic baseline's on the same rows must be at
    # least this (0: never worse than the baseline).
    min_auc_over_baseline: float | None = Field(default=None, ge=-1, le=1)


class FairnessSpec(_Strict):
    """How protected attributes are grouped and the bounds that act as gates."""

    bands: dict[str, list[float]] = Field(default_factory=dict)
    labels: dict[str, dict[Scalar, str]] = Field(default_factory=dict)
    min_adverse_impact_ratio: float | None = Field(default=None, gt=0, le=1)
    max_equal_opportunity_difference: float | None = Field(default=None, ge=0, le=1)
    min_group_size: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _sorted_bands(self) -> FairnessSpec:
        for column, cuts in self.bands.items():
            if not cuts or any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
                raise ValueError(
                    f"bands.{column}: cut points must be a non-empty, strictly increasing list"
                )
        return self


DEFAULT_TOP_K = 4  # adverse-action reasons given per decision, unless the spec says otherwise


class ReasonsSpec(_Strict):
    """Adverse-action reasons: the words a lender gives for each feature, and how many to give."""

    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=20)
    texts: dict[str, str] = Field(default_factory=dict)


class ModelCardSpec(_Strict):
    """Words for the model card that only the owner can supply."""

    purpose: str = "Estimate the probability of the positive class."
    intended_use: str | None = None
    owner: str | None = None
    limitations: list[str] = Field(default_factory=list)


class RegistrySpec(_Strict):
    """Where runs, model versions and the audit tables go; by default SQLite files under .keel/."""

    tracking_uri: str | None = None
    governance_uri: str | None = None
    checkpoints: str | None = None  # where signed audit heads go (a folder or object-store URL)
    # where MLflow keeps run artifacts (model files, cards): an absolute folder or an object-store
    # URL such as s3://bucket/mlflow; default artifacts/ in the project. Read when an experiment
    # is created: an existing experiment keeps the location it was created with.
    artifact_root: str | None = Field(default=None, pattern=r"^(/|[a-z][a-z0-9+.-]*://)\S+$")
    # each names a folder under the project (artifacts/, cards/): a plain name, never a path
    experiment: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    model_name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class AlertsSpec(_Strict):
    """Where alerts go besides the command's output: a webhook whose host is on the allow-list."""

    webhook: str | None = Field(default=None, pattern=r"^https?://[^/\s]+(/\S*)?$")
    allowed_hosts: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _allowed(self) -> AlertsSpec:
        if self.webhook is not None:
            host = urllib.parse.urlsplit(self.webhook).hostname or ""
            if host not in self.allowed_hosts:
                raise ValueError(
                    f"webhook host '{host}' is not in alerts.allowed_hosts {self.allowed_hosts}; "
                    "add it there to allow sending alerts to it"
                )
        return self


class MonitoringSpec(_Strict):
    """How ``keel monitor`` cuts the prediction log into windows and when it raises alerts.

    Drift: a feature drifts when a test rejects at ``alpha`` over all tests of a window
    (Bonferroni); it is an alert when the change is also large (``psi_alert``,
    ``missing_alert``, ``unseen_alert``). Performance: the realized AUC of the rows labelled
    by the time of the run (an event's label counts once ``label_delay`` has passed, or from
    its arrival time when labels carry one) against ``min_auc`` and the model's test AUC less
    ``max_auc_drop``; the label-free estimate of every window against its own value on the
    test rows less ``max_auc_drop``. Windows of fewer than ``min_rows`` rows (or labelled
    rows) are shown, never judged.
    """

    window: Literal["day", "week", "month"] = "week"
    label_delay: Duration = "0"
    min_rows: int = Field(default=200, ge=1)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    psi_alert: float = Field(default=0.2, gt=0)
    missing_alert: float = Field(default=0.05, gt=0, le=1)
    unseen_alert: float = Field(default=0.05, gt=0, le=1)
    min_auc: float | None = Field(default=None, ge=0, le=1)
    max_auc_drop: float | None = Field(default=0.05, ge=0, le=1)
    alerts: AlertsSpec = AlertsSpec()


class RetrainingSpec(_Strict):
    """How ``keel retrain`` decides whether to promote a challenger.

    A challenger is promoted only when it is better on the newest labelled window.

    ``auto_promote`` lets the policy approve and promote without a person when the challenger
    beats the champion by ``min_improvement`` (on the tuning metric) and every gate passes;
    ``approved_by`` names who signed that policy off (recorded as the approver). Otherwise a
    better challenger waits for approval under the ``challenger`` alias (scored in the shadow).
    """

    auto_promote: bool = False
    approved_by: str | None = None
    min_improvement: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _signed(self) -> RetrainingSpec:
        if self.auto_promote and not (self.approved_by or "").strip():
            raise ValueError("auto_promote needs approved_by: who signed off automatic promotion")
        return self


class ProjectSpec(_Strict):
    """A whole Keel project: one spec for the lifecycle."""

    project: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    description: str | None = None
    seed: int = Field(default=42, ge=0)
    data: DataSpec
    contract: ContractSpec
    target: TargetSpec
    protected: list[str] = Field(default_factory=list)
    features: FeatureSpec = FeatureSpec()
    split: SplitSpec = SplitSpec()
    models: ModelsSpec = ModelsSpec()
    tuning: TuningSpec = TuningSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    gates: GatesSpec = GatesSpec()
    fairness: FairnessSpec = FairnessSpec()
    reasons: ReasonsSpec = ReasonsSpec()
    model_card: ModelCardSpec = ModelCardSpec()
    registry: RegistrySpec = RegistrySpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    retraining: RetrainingSpec = RetrainingSpec()
    # `keel init` writes `reviewed: false`: a version trained from an unreviewed starter spec
    # fails the `spec_reviewed` gate, so it cannot be approved until a person has read the spec
    # and set this to true (or removed the line).
    reviewed: bool = True

    @model_validator(mode="after")
    def _cross_references(self) -> ProjectSpec:
        cols = self.contract.columns
        refs: list[tuple[str, str | None]] = [
            ("target.column", self.target.column),
            ("data.id_column", self.data.id_column),
            ("data.time_column", self.data.time_column),
        ]
        refs += [(f"protected[{i}]", c) for i, c in enumerate(self.protected)]
        refs += [(f"features.include[{i}]", c) for i, c in enumerate(self.features.include or [])]
        refs += [(f"features.exclude[{i}]", c) for i, c in enumerate(self.features.exclude)]
        refs += [(f"features.categorical[{i}]", c) for i, c in enumerate(self.features.categorical)]
        refs += [(f"data.recode.{c}", c) for c in self.data.recode]
        for section in ("bands", "labels"):
            for c in getattr(self.fairness, section):
                if c not in self.protected:
                    raise ValueError(
                        f"fairness.{section}.{c}: '{c}' is not a protected attribute "
                        f"(protected: {self.protected}).{did_you_mean(c, self.protected)}"
                    )
        refs += [
            (f"models.lightgbm.monotone.{c}", c)
            for c in self.models.lightgbm.monotone
            if c not in self.features.derived and c not in self.computed_features()
        ]
        refs += self._window_references()
        refs += self._derived_references()
        refs.append(("split.known_entity", self.split.known_entity))
        if self.evaluation.precision_at_k is not None:
            refs.append(("evaluation.precision_at_k.entity", self.evaluation.precision_at_k.entity))
        if (self.evaluation.by_day or self.evaluation.precision_at_k) and not self.data.time_column:
            raise ValueError("evaluation by day needs data.time_column")
        for where, col in refs:
            if col is not None and col not in cols:
                raise ValueError(
                    f"{where}: column '{col}' is not in contract.columns.{did_you_mean(col, cols)}"
                )
        features = self.model_features()
        for name, text in self.reasons.texts.items():
            if name not in features:
                raise ValueError(
                    f"reasons.texts.{name}: '{name}' is not a model feature; reasons are given for "
                    f"features only.{did_you_mean(name, features)}"
                )
            if not text.strip():
                raise ValueError(f"reasons.texts.{name}: the reason text is empty")
        if self.split.method in ("time", "delayed") and not self.data.time_column:
            raise ValueError(f"split.method '{self.split.method}' needs data.time_column")
        reserved = {self.target.column, self.data.id_column, self.data.time_column} - {None}
        for col in self.features.include or []:
            if col in self.protected:
                raise ValueError(
                    f"features.include: '{col}' is a protected attribute and never a feature"
                )
            if col in reserved:
                raise ValueError(f"features.include: '{col}' is the target, id or time column")
        return self

    def _window_references(self) -> list[tuple[str, str]]:
        features = self.features
        if (features.windows or features.calendar) and not self.data.time_column:
            raise ValueError("features.windows and features.calendar need data.time_column")
        refs: list[tuple[str, str]] = []
        for group_name, group in features.windows.items():
            where = f"features.windows.{group_name}"
            refs.append((f"{where}.entity", group.entity))
            if group.entity in self.protected:
                raise ValueError(
                    f"{where}.entity: '{group.entity}' is a protected attribute; "
                    "features are never computed per protected group"
                )
            for agg_name, agg in group.aggregations.items():
                at = f"{where}.aggregations.{agg_name}.column"
                if agg.column is None:
                    continue
                refs.append((at, agg.column))
                if agg.column in self.protected or agg.column == self.data.time_column:
                    raise ValueError(
                        f"{at}: '{agg.column}' is the time column or a protected attribute; "
                        "it is not aggregated"
                    )
                if agg.column == self.target.column and group.delay == "0":
                    raise ValueError(
                        f"{at}: aggregating the target '{agg.column}' needs a delay (for example "
                        "delay: 7d): labels arrive after the event, so a window reaching up to the "
                        "row's own time would use labels not yet known when it is scored"
                    )
                contract = self.contract.columns.get(agg.column)
                numeric = agg.function in ("sum", "mean", "std", "min", "max")
                if (
                    contract is not None
                    and numeric
                    and contract.dtype not in ("int", "float", "bool")
                ):
                    raise ValueError(
                        f"{at}: '{agg.function}' needs a number column, but '{agg.column}' is "
                        f"{contract.dtype}; use count or distinct_count"
                    )
        for name in features.calendar:
            self._check_new_name(f"features.calendar.{name}", name)
        for feature in self.window_features():
            self._check_new_name(f"features.windows.{feature.group}", feature.name)
        return refs

    def _check_new_name(self, where: str, name: str) -> None:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", name) or name in self.contract.columns:
            raise ValueError(
                f"{where}: the feature '{name}' needs a new name of letters, digits and _ "
                "that is not a contract column"
            )

    def _derived_references(self) -> list[tuple[str, str]]:
        refs = []
        forbidden = set(self.protected) | {
            self.target.column,
            self.data.id_column,
            self.data.time_column,
        }
        computed = set(self.computed_features())
        names = (
            [f.name for f in self.window_features()]
            + list(self.features.calendar)
            + list(self.features.derived)
        )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"features: the names {repeated} are given to more than one window, calendar or "
                "derived feature"
            )
        for name, expression in self.features.derived.items():
            where = f"features.derived.{name}"
            self._check_new_name(where, name)
            for col in columns(expression):
                if col in forbidden:
                    raise ValueError(
                        f"{where}: '{col}' is the target, id, time or a protected attribute; "
                        "a feature may not be computed from it"
                    )
                if col not in computed:
                    refs.append((where, col))
        return refs

    def window_features(self) -> list[WindowFeature]:
        """Every point-in-time window feature, in spec order: by group, window, then aggregation."""
        return [
            WindowFeature(
                name=f"{group_name}_{agg_name}_{window}",
                group=group_name,
                entity=group.entity,
                function=agg.function,
                column=agg.column,
                window_us=duration_us(window),
                delay_us=duration_us(group.delay),
                boundary=group.boundary,
            )
            for group_name, group in self.features.windows.items()
            for window in group.windows
            for agg_name, agg in group.aggregations.items()
        ]

    def computed_features(self) -> list[str]:
        """Features computed from the rows before any expression.

        Window features, then calendar parts.
        """
        return [f.name for f in self.window_features()] + list(self.features.calendar)

    def feature_columns(self) -> list[str]:
        """Model inputs: included columns minus target, id, time, protected and excluded."""
        reserved = {self.target.column, self.data.id_column, self.data.time_column}
        reserved |= set(self.protected) | set(self.features.exclude)
        candidates = self.features.include or list(self.contract.columns)
        return [c for c in candidates if c not in reserved]

    def model_features(self) -> list[str]:
        """Every model input in order.

        The feature columns, window and calendar features, then derived ones.
        """
        return self.feature_columns() + self.computed_features() + list(self.features.derived)

    def input_contract(self, name: str) -> ColumnContract:
        """What a model input holds.

        Its contract column, or for a window or calendar feature a number.
        """
        if name in self.contract.columns:
            return self.contract.columns[name]
        if name in self.computed_features():
            return ColumnContract(
                dtype="float", nullable=True, description=f"computed feature {name}"
            )
        raise KeyError(f"'{name}' is neither a contract column nor a computed feature")

    def reason_texts(self) -> dict[str, str]:
        """A reason text for every model feature: the spec's words, else the feature's name.

        A column's description is not a reason: it may be a data note ("observed 2% missing"),
        and an applicant is never told one.
        """
        return {name: self.reasons.texts.get(name) or name for name in self.model_features()}

    def model_name(self) -> str:
        """The registered model name: ``registry.model_name`` or the project name."""
        return self.registry.model_name or self.project


def _accepted_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model that owns ``loc``'s last key, if it is a model."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif isinstance(part, (int, str)) and getattr(current, "__origin__", None) in (dict, list):
            current = current.__args__[-1]
        else:
            annotation_args = getattr(current, "__args__", ())
            models = [
                a for a in annotation_args if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            current = models[0] if models else None
            if current is not None:
                field = current.model_fields.get(str(part))
                current = field.annotation if field else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(err: ValidationError, source: str) -> str:
    """Turn pydantic's errors into lines naming the key path, the problem and what is accepted."""
    lines = [f"{source}: the spec is not valid ({err.error_count()} problem(s)):"]
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            accepted = _accepted_keys(ProjectSpec, loc) or []
            key = str(loc[-1])
            lines.append(
                f"  - {path}: unknown key '{key}'.{did_you_mean(key, accepted)}"
                + (f" Accepted keys: {', '.join(accepted)}." if accepted else "")
            )
        elif e["type"] == "missing":
            lines.append(f"  - {path}: required key is missing.")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            given = e.get("input")
            shown = "" if isinstance(given, (dict, list)) or not loc else f" (got {given!r})"
            line = f"{msg}{shown}" if not loc else f"{path}: {msg}{shown}"
            lines.append(f"  - {line}" + ("" if line.endswith((".", "?")) else "."))
    return "\n".join(lines)


def parse_spec(raw: Any, *, source: str = "spec", base_dir: Path | None = None) -> ProjectSpec:
    """Validate a parsed YAML mapping; relative data paths resolve against ``base_dir``."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec is a YAML mapping of keys, got {type(raw).__name__}")
    try:
        spec = ProjectSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from None
    if base_dir is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec.data.source):
        path = Path(spec.data.source)
        if not path.is_absolute():
            resolved = (base_dir / path).resolve()
            spec = spec.model_copy(
                update={"data": spec.data.model_copy(update={"source": str(resolved)})}
            )
    return spec


def load_spec(path: str | Path) -> ProjectSpec:
    """Read and validate a ``keel.yaml`` file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file '{path}' does not exist; pass the path of a keel.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    return parse_spec(raw, source=str(path), base_dir=path.resolve().parent)


def dump_spec(spec: ProjectSpec) -> str:
    """The resolved spec as YAML, with every default written out.

    :func:`parse_spec` reads it back equal.
    """
    raw = spec.model_dump(mode="json")
    # JSON mode turns mapping keys into text, but a code's type matters (code 0 is not '0').
    raw["data"]["recode"] = {column: dict(mapping) for column, mapping in spec.data.recode.items()}
    raw["fairness"]["labels"] = {
        column: dict(mapping) for column, mapping in spec.fairness.labels.items()
    }
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
