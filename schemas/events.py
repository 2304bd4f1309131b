"""The event contract: one typed msgspec struct per event kind.

Every line of a segment is one event encoded as a JSON object tagged by ``kind``. The
struct definitions below are the single source of truth: the JSON Schema (``runlake
schema``), the DuckDB column types and the docs are all derived from them.

Envelope (every kind): ``kind``, ``v`` (schema version of that kind), ``run_id``,
``writer`` (unique per process), ``seq`` (per-writer, gap-free), ``ts`` (wall clock, UTC,
integer nanoseconds; a float in seconds is accepted on read), ``rank``. Kinds that carry a
training step have a ``step`` field.

Evolution rules: within a version only additive changes (new optional fields) are allowed,
so old readers ignore what they do not know (``forbid_unknown_fields`` stays off). A new
version of a kind registers an upcaster in :mod:`runlake.schemas.versions`.

Packed metrics: the emitter's writer stores the ``metrics`` events of one flush as a single
``metrics_block`` line (:class:`MetricsBlock`): the same events, column-wise, so that keys
and envelope fields are written once per flush instead of once per step. It is an encoding
of ``metrics`` events, not a kind of its own: :func:`runlake.schemas.decode_lines` hands
readers the ``metrics`` events it holds, and ingest loads its columns without rebuilding them.

Metric values: JSON has no NaN/Infinity literal and msgspec writes non-finite floats as
``null``. The emitter therefore writes non-finite values as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``; readers map those strings (and a bare ``null``) back
with :func:`runlake.schemas.values.to_float`. Booleans are accepted and read as 1.0 / 0.0.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

from runlake.schemas.severity import Severity  # the severities' one home

__all__ = [
    "Alert",
    "AnyEvent",
    "AnyLine",
    "Checkpoint",
    "Data",
    "Dataset",
    "EVENT_TYPES",
    "Event",
    "Git",
    "Heartbeat",
    "Histogram",
    "Host",
    "Int32",
    "Int64",
    "Log",
    "MEDIA_TYPES",
    "Media",
    "MetricValue",
    "Metrics",
    "MetricsBlock",
    "MetricsGroup",
    "RunEnd",
    "RunStart",
    "RunUpdate",
    "Sample",
    "Seconds",
    "System",
]

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer the store keeps as BIGINT: anything outside is a bad line, not a crash."""
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
"""An integer the store keeps as INTEGER (ranks, epochs, log levels)."""
Seconds = Annotated[float, msgspec.Meta(ge=-1e11, le=1e11)]
"""A wall-clock ``ts`` written as float seconds since the epoch (within ±3,000 years)."""

MetricValue = Union[float, str, bool, None]
"""A scalar as it appears on disk: a float, a non-finite token string, a bool, or null."""

RunStatus = Literal["finished", "failed", "killed"]

MediaType = Literal["image", "audio", "video", "table", "text", "file"]
MEDIA_TYPES: tuple[str, ...] = ("image", "audio", "video", "table", "text", "file")
"""What a ``media`` event's blob holds (``Media.media``)."""


class Event(msgspec.Struct, tag_field="kind", gc=False, omit_defaults=True):
    """The envelope shared by every kind (see the module docstring)."""

    v: int
    run_id: str
    writer: str
    seq: Int64
    ts: Int64 | Seconds
    rank: Int32


class Git(msgspec.Struct, gc=False, omit_defaults=True):
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None


class Host(msgspec.Struct, gc=False, omit_defaults=True):
    hostname: str = ""
    pid: Int64 = 0
    python: str = ""
    platform: str = ""
    cpu_count: Int64 | None = None
    ram_bytes: Int64 | None = None
    torch: str | None = None
    cuda: str | None = None
    gpus: list[str] = []


class RunStart(Event, tag="run_start"):
    """A writer (process) started writing a run. Every rank writes one."""

    project: str
    name: str
    group: str | None = None
    config: dict[str, Any] = {}
    tags: list[str] = []
    git: Git | None = None
    host: Host | None = None
    argv: list[str] = []
    world_size: Int32 = 1
    local_rank: Int32 = 0
    attempt: Int32 = 0
    resumed_from: str | None = None
    start_step: Int64 = 0
    total_steps: Int64 | None = None
    heartbeat_s: float = 30.0


class Metrics(Event, tag="metrics"):
    """Scalars at one step: ``values`` maps key -> float (NaN/Inf kept as tokens)."""

    step: Int64
    values: dict[str, MetricValue]
    epoch: Int32 | None = None


class MetricsGroup(msgspec.Struct, gc=False, omit_defaults=True):
    """The rows of a block that log the same keys, in the same order.

    ``values`` is row-major: ``len(rows) * len(keys)`` values, the first row's keys first.
    ``rows`` indexes the block's rows; null means every row of the block.
    """

    keys: list[str]
    values: list[MetricValue]
    rows: list[Int64] | None = None


class MetricsBlock(Event, tag="metrics_block"):
    """Many ``metrics`` events of one writer, column-wise (see the module docstring).

    Row ``i`` is the metrics event with ``seq=seqs[i]``, ``ts=times[i]``, ``step=steps[i]``
    and ``epoch=epochs[i]`` (``epochs`` is null when no row has one); the envelope's ``seq``
    and ``ts`` are the first row's. Every row belongs to exactly one group.
    """

    seqs: list[Int64]
    times: list[Int64 | Seconds]
    steps: list[Int64]
    groups: list[MetricsGroup]
    epochs: list[Int32 | None] | None = None


class System(Event, tag="system"):
    """System stats sampled by the emitter; keys are stored under ``sys/`` in metrics."""

    values: dict[str, MetricValue]
    step: Int64 | None = None


class Data(Event, tag="data"):
    """Data lineage: the items one step consumed.

    ``augment``, ``cache_hit`` and ``load_ms`` are either shared by all items (a single
    value) or per item (a list aligned with ``items``).
    """

    items: list[str]
    split: str = "train"
    step: Int64 | None = None
    epoch: Int32 | None = None
    source: str | None = None
    dataset: str | None = None
    augment: dict[str, Any] | list[dict[str, Any] | None] | None = None
    cache_hit: bool | list[bool | None] | None = None
    load_ms: float | list[float | None] | None = None


class Dataset(Event, tag="dataset"):
    """A dataset registered by the run."""

    name: str
    version: str | None = None
    digest: str | None = None
    items: Int64 | None = None
    source: str | None = None
    split: str | None = None
    meta: dict[str, Any] = {}
    step: Int64 | None = None


class Checkpoint(Event, tag="checkpoint"):
    uri: str
    step: Int64 | None = None
    bytes: Int64 | None = None
    sha256: str | None = None
    metrics: dict[str, MetricValue] = {}
    tags: list[str] = []


class Sample(Event, tag="sample"):
    """A generated or evaluated sample with its quality scores."""

    name: str
    scores: dict[str, MetricValue]
    step: Int64 | None = None
    uri: str | None = None
    split: str | None = None
    item_id: str | None = None
    meta: dict[str, Any] = {}


class Log(Event, tag="log"):
    level: str
    message: str
    levelno: Int32 = 20
    logger: str = ""
    step: Int64 | None = None


class Alert(Event, tag="alert"):
    """An alert raised in-process by an online check (``source="online"``) or the user."""

    message: str
    severity: Severity = "warning"
    alert: str = "user"
    key: str | None = None
    value: MetricValue = None
    suggestion: str | None = None
    step: Int64 | None = None
    source: str = "user"


class Histogram(Event, tag="histogram"):
    """The distribution of one tensor or list of values at a step, as bucket counts.

    ``edges`` are the ``len(counts) + 1`` ascending, finite bucket boundaries: bucket ``i``
    holds the values in ``[edges[i], edges[i+1])`` (the last one closed). ``counts`` may be
    fractional (TensorBoard's are doubles). ``min``/``max``/``num``/``sum``/``sum_squares``
    are the exact statistics of the values when known (TensorBoard's HistogramProto keeps
    them, so an import exports back unchanged).
    """

    key: str
    edges: list[float]
    counts: list[float]
    step: Int64 | None = None
    epoch: Int32 | None = None
    min: float | None = None
    max: float | None = None
    num: float | None = None
    sum: float | None = None
    sum_squares: float | None = None


class Media(Event, tag="media"):
    """An image, audio clip, video, table, text or any file logged under a key at a step.

    The bytes are never in the event: they are a content-addressed blob beside the run's
    segments (``<run>/blobs/<sha256[:2]>/<sha256>``, :mod:`runlake.schemas.blobs`) written
    before the event. ``sha256`` (hex) names the blob and is its checksum; ``bytes`` is its
    size; ``mime`` its type (``image/png``, ``audio/wav``, ``application/json`` ...).
    ``meta`` holds what describes the content: ``width``/``height``/``channels`` for
    images, ``sample_rate``/``duration_s``/``channels`` for audio, ``fps``/``frames`` for
    video, ``columns``/``rows`` for tables, ``scores`` for generated samples...
    """

    key: str
    media: MediaType
    sha256: str
    bytes: Int64
    mime: str
    step: Int64 | None = None
    caption: str | None = None
    name: str | None = None
    meta: dict[str, Any] = {}


class RunUpdate(Event, tag="update"):
    """A change to the run after it started (W&B's ``run.config.update``, ``run.summary``).

    ``config`` and ``summary`` keys are merged into the run's config and summary (a later
    update wins key by key; ``run_end.summary`` is merged last); ``tags`` replaces the tags;
    ``notes`` replaces the notes; ``metrics`` declares how metrics are read, by name or glob
    (``{"val/*": {"step_metric": "epoch", "summary": "max", "goal": "maximize"}}``).
    """

    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    tags: list[str] | None = None
    notes: str | None = None
    metrics: dict[str, dict[str, Any]] = {}
    step: Int64 | None = None


class Heartbeat(Event, tag="heartbeat"):
    """Liveness and progress, written by the writer thread at an interval."""

    step: Int64 | None = None
    total_steps: Int64 | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    interval_s: float = 30.0
    events: Int64 = 0
    dropped: dict[str, int] = {}


class RunEnd(Event, tag="run_end"):
    status: RunStatus
    exit_reason: str | None = None
    traceback: str | None = None
    summary: dict[str, Any] = {}
    step: Int64 | None = None
    events: Int64 = 0
    dropped: dict[str, int] = {}


EVENT_TYPES: tuple[type[Event], ...] = (
    RunStart,
    Metrics,
    System,
    Data,
    Dataset,
    Checkpoint,
    Sample,
    Log,
    Alert,
    Heartbeat,
    RunEnd,
    Histogram,
    Media,
    RunUpdate,
)

AnyEvent = Union[
    RunStart, Metrics, System, Data, Dataset, Checkpoint, Sample, Log, Alert, Heartbeat, RunEnd,
    Histogram, Media, RunUpdate,
]
"""The tagged union of every event kind."""

AnyLine = Union[
    RunStart, Metrics, MetricsBlock, System, Data, Dataset, Checkpoint, Sample, Log, Alert,
    Heartbeat, RunEnd, Histogram, Media, RunUpdate,
]
"""What one segment line decodes into: an event, or a block of ``metrics`` events."""
