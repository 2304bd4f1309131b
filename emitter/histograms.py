"""Histogram events: bucket counts of a tensor or list at a step, and the rules for their
arguments (:meth:`runlake.emitter.media.MediaKinds.log_histogram`).

``values`` go through numpy when it is importable (any array or tensor is flattened; torch
leaves the graph and the device first), else :func:`plain_histogram` buckets a nested list
the same way. Equal-width buckets from the smallest to the largest finite value
(``numpy.histogram``'s rule, one distinct value included), with the exact statistics
TensorBoard's HistogramProto keeps (:data:`HISTOGRAM_STATS`). NaN/Inf are left out and
counted (``nonfinite_histogram``): a histogram is of the finite values. Given buckets
(``edges``/``counts``, from importers or a caller that bucketed on the GPU) are checked:
``len(counts) + 1`` finite, ascending edges and counts >= 0.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from runlake.emitter.records import bad, epoch_or, step_or
from runlake.emitter.values import as_int, check_key, describe, is_tensor, safe_repr
from runlake.schemas.errors import EventValueError

__all__ = ["HISTOGRAM_STATS", "MAX_BUCKETS", "histogram_fields", "plain_histogram"]

MAX_BUCKETS = 65_536
"""Buckets one histogram may have (``bins`` or ``len(counts)``)."""
HISTOGRAM_STATS = ("min", "max", "num", "sum", "sum_squares")
"""The exact statistics a histogram event may carry (TensorBoard's HistogramProto's)."""


def key_arg(key: Any, what: str) -> str:
    """A histogram/media key: the metric key check, the message naming the kind."""
    try:
        return check_key(key)
    except EventValueError as exc:
        raise EventValueError(f"{what} key: {exc}") from None


def _finite(value: Any, what: str) -> float:
    try:
        out = float(value.item() if is_tensor(value) and hasattr(value, "item") else value)
    except Exception:
        raise EventValueError(f"{what} must be a number, got {describe(value)} "
                              f"{safe_repr(value)}") from None
    if not math.isfinite(out):
        raise EventValueError(f"{what} must be finite, got {out}")
    return out


def _floats(values: Any, what: str) -> list[float]:
    """A 1-D sequence (list, tuple, numpy array, tensor) as finite floats."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise EventValueError(f"{what} must be a list of numbers, got {describe(values)}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise EventValueError(f"{what}[{i}] must be a number, got {describe(v)} "
                                  f"{safe_repr(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise EventValueError(f"{what}[{i}] must be finite, got {v}")
        out.append(v)
    return out


def _flat_values(values: Any) -> tuple[Any, list[float] | None]:
    """``(numpy float64 array, None)`` when numpy can read ``values``, else ``(None, list)``."""
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        data = values
        if hasattr(data, "detach"):  # torch: off the graph and the device, bfloat16 widened
            data = data.detach()
            if hasattr(data, "cpu"):
                data = data.cpu()
            if hasattr(data, "double"):
                data = data.double()
            data = data.numpy()
        try:
            arr = np.asarray(data, dtype=np.float64).ravel()
        except Exception as exc:
            raise EventValueError(f"histogram values must be numbers (a list, array or tensor),"
                                  f" got {describe(values)} ({type(exc).__name__})") from None
        return arr, None
    out: list[float] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise EventValueError(f"histogram values must be numbers, got {describe(v)}")

    walk(values.tolist() if hasattr(values, "tolist") else values)
    return None, out


def plain_histogram(values: list[float], bins: int
                    ) -> tuple[list[float], list[float], dict[str, float]]:
    """``numpy.histogram``'s equal-width buckets and the statistics, without numpy.

    ``values`` are finite and not empty; one distinct value gets numpy's bucket of width 1.
    """
    lo, hi = min(values), max(values)
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    width = (last - first) / bins
    edges = [first + i * width for i in range(bins)] + [last]
    counts = [0.0] * bins
    for v in values:
        counts[min(int((v - first) / width), bins - 1)] += 1.0
    return edges, counts, dict(min=lo, max=hi, num=float(len(values)), sum=math.fsum(values),
                               sum_squares=math.fsum(v * v for v in values))


def _histogram(run, key: str, values: Any, bins: int) -> dict[str, Any]:
    """Edges, counts and exact statistics of the finite ``values`` (non-finite counted)."""
    arr, plain = _flat_values(values)
    if arr is not None:
        import numpy as np

        finite = arr
        lo = hi = math.nan
        if arr.size:
            lo, hi = float(arr.min()), float(arr.max())  # NaN anywhere makes them NaN
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = arr[np.isfinite(arr)]  # the rare case: pay for the mask only here
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
        left_out = arr.size - finite.size
        if finite.size:
            counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
            stats = dict(min=lo, max=hi, num=float(finite.size), sum=float(finite.sum()),
                         sum_squares=float(np.dot(finite, finite)))
            edges, counts = edges.tolist(), counts.astype(np.float64).tolist()
    else:
        finite = [v for v in plain if math.isfinite(v)]
        left_out = len(plain) - len(finite)
        if finite:
            edges, counts, stats = plain_histogram(finite, bins)
    if left_out:
        run._drop("nonfinite_histogram", f"log_histogram({key!r}): {left_out} NaN/Inf value(s)"
                  f" left out of the histogram (its statistics are of the finite values)",
                  left_out)
    if not len(finite):
        raise EventValueError(f"histogram {key!r} has no finite value to count")
    stats = {k: v for k, v in stats.items() if math.isfinite(v)}  # sum_squares may overflow
    return dict(edges=edges, counts=counts, **stats)


def histogram_fields(run, key: Any, values: Any, *, edges, counts, bins, step, epoch,
                     stats) -> dict[str, Any]:
    """The fields of the ``histogram`` event for :meth:`MediaKinds.log_histogram`."""
    key = key_arg(key, "histogram")
    if (values is None) == (edges is None and counts is None):
        raise EventValueError(f"histogram {key!r}: pass values=, or edges= and counts=, "
                              f"not both or neither")
    if values is not None:
        try:
            bins = as_int(bins, "bins")
        except EventValueError as exc:
            raise EventValueError(f"histogram {key!r}: {exc}") from None
        if not 1 <= bins <= MAX_BUCKETS:
            raise EventValueError(f"histogram {key!r}: bins must be 1-{MAX_BUCKETS:,}, got {bins}")
        out = _histogram(run, key, values, bins)
    else:
        if edges is None or counts is None:
            raise EventValueError(f"histogram {key!r}: edges= and counts= go together")
        edges, counts = _floats(edges, "edges"), _floats(counts, "counts")
        if not 1 <= len(counts) <= MAX_BUCKETS or len(edges) != len(counts) + 1:
            raise EventValueError(
                f"histogram {key!r}: {len(edges)} edges for {len(counts)} counts; give "
                f"len(counts) + 1 edges and 1-{MAX_BUCKETS:,} counts")
        if any(b < a for a, b in zip(edges, edges[1:])):
            raise EventValueError(f"histogram {key!r}: edges must be ascending, got "
                                  f"{safe_repr(edges, 120)}")
        if any(c < 0 for c in counts):
            raise EventValueError(f"histogram {key!r}: counts must be >= 0")
        out = dict(edges=edges, counts=counts)
    if stats is not None:
        if not isinstance(stats, Mapping):
            bad(run, "bad_value", f"histogram {key!r}: stats must be a dict of "
                f"{'/'.join(HISTOGRAM_STATS)}, got {describe(stats)}; left out")
        else:
            for name, value in stats.items():
                if name not in HISTOGRAM_STATS:
                    bad(run, "bad_value", f"histogram {key!r}: unknown stat {safe_repr(name)}; "
                        f"known: {', '.join(HISTOGRAM_STATS)}")
                    continue
                if value is None:
                    continue
                try:
                    out[name] = _finite(value, f"histogram {key!r} stat {name}")
                except EventValueError as exc:
                    bad(run, "bad_value", f"{exc}; left out")
    out.update(key=key, step=step_or(run, step, run._default_step()),
               epoch=epoch_or(run, epoch))
    return out


