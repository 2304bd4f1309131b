"""W&B's data types, as far as runlake's event kinds carry them.

``Histogram`` -> a ``histogram`` event (:meth:`Run.log_histogram`); ``Image``, ``Audio``,
``Video``, ``Table`` and ``Html`` -> ``media`` events (:meth:`Run.log_media`: the bytes are
a content-addressed blob beside the run's segments). W&B types that have no runlake kind
(``Object3D``, ``Molecule``, ``Plotly``, ``Graph``, bounding boxes, masks...) refuse at
construction with an error naming what to log instead. numpy is imported only by a type
that needs it (``Histogram`` from a sequence).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from runlake.wandb._errors import Error

__all__ = ["Audio", "Histogram", "Html", "Image", "Media", "Table", "Video", "refused"]


class Media:
    """Base of the loggable W&B types: ``_log(run, key, step)`` records one event and
    returns what the summary shows for the key."""

    _kind = "file"

    def _log(self, run: Any, key: str, step: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Histogram(Media):
    """``wandb.Histogram(sequence=None, np_histogram=None, num_bins=64)``.

    From a sequence, runlake computes the buckets (``numpy.histogram`` with ``num_bins``,
    W&B's binning) and keeps the exact min/max/num/sum/sum_squares; from ``np_histogram``
    (``(counts, edges)``) the buckets are stored as given.
    """

    MAX_LENGTH = 512

    def __init__(self, sequence: Sequence | None = None, np_histogram: Any = None,
                 num_bins: int = 64) -> None:
        self._values = None
        if np_histogram is not None:
            if len(np_histogram) != 2:
                raise ValueError("np_histogram must be a (counts, bin_edges) tuple, as "
                                 "numpy.histogram returns")
            counts, edges = np_histogram
            self.histogram = [float(c) for c in (counts.tolist() if hasattr(counts, "tolist")
                                                 else counts)]
            self.bins = [float(e) for e in (edges.tolist() if hasattr(edges, "tolist")
                                            else edges)]
        elif sequence is not None:
            import numpy as np

            values = np.asarray(sequence.detach().cpu().numpy() if hasattr(sequence, "detach")
                                else sequence, dtype=float).ravel()
            counts, edges = np.histogram(values, bins=num_bins)
            self.histogram, self.bins = counts.tolist(), edges.tolist()
            self._values = values
        else:
            raise ValueError("Histogram needs sequence= or np_histogram=")
        if len(self.histogram) > self.MAX_LENGTH:
            raise ValueError(f"The maximum length of a histogram is {self.MAX_LENGTH}")
        if len(self.histogram) + 1 != len(self.bins):
            raise ValueError("len(bins) must be len(histogram) + 1")
        self.num_bins = len(self.histogram)

    def _log(self, run: Any, key: str, step: int) -> Any:
        if self._values is not None:
            run.log_histogram(key, self._values, bins=self.num_bins, step=step)
        else:
            run.log_histogram(key, edges=self.bins, counts=self.histogram, step=step)
        return {"_type": "histogram", "bins": len(self.histogram)}


class _Blob(Media):
    """A type logged as one ``media`` event; subclasses set ``_kind`` and ``_args``."""

    def __init__(self, data: Any, caption: str | None, **extra: Any) -> None:
        if data is None:
            raise ValueError(f"{type(self).__name__} needs data or a path")
        self._data = os.fspath(data) if isinstance(data, os.PathLike) else data
        self.caption = None if caption is None else str(caption)
        self._extra = {k: v for k, v in extra.items() if v is not None}
        self.sha256: str | None = None

    def _log(self, run: Any, key: str, step: int) -> Any:
        self.sha256 = run.log_media(key, self._data, media=self._kind, step=step,
                                    caption=self.caption, **self._extra)
        return {"_type": self._kind, "sha256": self.sha256}


class Image(_Blob):
    """``wandb.Image(data_or_path, mode=None, caption=None, ...)``: a numpy/torch array
    (HW, HWC, CHW; uint8, or float in [0, 1]), a PIL image, a matplotlib figure, or a file.

    ``boxes``, ``masks`` and ``classes`` have no runlake kind: passing them is an error.
    """

    _kind = "image"

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None, boxes: Any = None,
                 masks: Any = None, file_type: str | None = None, normalize: bool = True) -> None:
        for name, given in (("boxes", boxes), ("masks", masks), ("classes", classes)):
            if given is not None:
                raise Error(f"wandb.Image({name}=...) has no runlake equivalent: log the "
                            f"image, and the {name} as a wandb.Table or in run.summary")
        if hasattr(data_or_path, "savefig"):  # a matplotlib figure: W&B renders it
            import io

            buf = io.BytesIO()
            data_or_path.savefig(buf, format="png")
            data_or_path = buf.getvalue()
            super().__init__(data_or_path, caption, mime="image/png")
            return
        if isinstance(data_or_path, (bytes, bytearray)):
            super().__init__(bytes(data_or_path), caption,
                             mime=f"image/{file_type or 'png'}")
            return
        super().__init__(data_or_path, caption)


class Audio(_Blob):
    """``wandb.Audio(data_or_path, sample_rate=None, caption=None)``: a file, or a 1-D or
    (samples, channels) float array with ``sample_rate`` (stored as 16-bit PCM WAV)."""

    _kind = "audio"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None,
                 caption: str | None = None) -> None:
        if not isinstance(data_or_path, (str, os.PathLike, bytes)) and sample_rate is None:
            raise ValueError("wandb.Audio: sample_rate is required for raw audio data")
        super().__init__(data_or_path, caption, sample_rate=sample_rate)


class Video(_Blob):
    """``wandb.Video(data_or_path, caption=None, fps=None, format=None)``: an encoded video
    file or its bytes. numpy frames are refused (runlake has no video encoder)."""

    _kind = "video"

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: int | None = None,
                 format: str | None = None) -> None:
        if not isinstance(data_or_path, (str, os.PathLike, bytes, bytearray)):
            raise Error("wandb.Video takes an encoded video file (or its bytes) here: runlake "
                        "does not encode numpy frames; write them with imageio or moviepy first")
        meta = {"fps": fps} if fps is not None else None
        mime = f"video/{format}" if format else None
        if isinstance(data_or_path, (bytes, bytearray)):
            data_or_path = bytes(data_or_path)
            mime = mime or "video/mp4"
        super().__init__(data_or_path, caption, meta=meta, mime=mime)


class Html(_Blob):
    """``wandb.Html(data, inject=True)``: HTML text or an ``.html`` file, stored as a file
    blob with mime ``text/html``."""

    _kind = "file"

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        if isinstance(data, str) and (data_is_not_path or not os.path.isfile(data)):
            data = data.encode("utf-8")
        elif hasattr(data, "read"):
            data = data.read()
            data = data.encode("utf-8") if isinstance(data, str) else data
        super().__init__(data, None, mime="text/html", name=None if isinstance(data, bytes)
                         else os.path.basename(os.fspath(data)))


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    raise Error(f"wandb.Table cell of type {type(value).__name__} is not stored by runlake "
                f"(cells are numbers, text, booleans, lists or dicts); log media separately")


class Table(Media):
    """``wandb.Table(columns=None, data=None, rows=None, dataframe=None)`` with
    ``add_data``/``add_column``/``get_column``; stored as a JSON blob
    ``{"columns": [...], "data": [[...]]}`` (media ``table``)."""

    _kind = "table"

    def __init__(self, columns: Sequence[str] | None = None, data: Sequence | None = None,
                 rows: Sequence | None = None, dataframe: Any = None, dtype: Any = None,
                 optional: Any = True, allow_mixed_types: bool = False,
                 log_mode: str | None = None) -> None:
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist() if hasattr(dataframe, "values") else list(
                dataframe.rows())
        data = data if data is not None else rows
        data = [list(r) for r in (data.tolist() if hasattr(data, "tolist") else (data or []))]
        if columns is None:
            columns = [f"Column_{i + 1}" for i in range(len(data[0]) if data else 0)]
        self.columns = [str(c) for c in columns]
        self.data: list[list[Any]] = []
        for row in data:
            self.add_data(*row)

    def add_data(self, *values: Any) -> None:
        """Append one row (one value per column)."""
        if len(values) != len(self.columns):
            raise ValueError(f"This table expects {len(self.columns)} columns: "
                             f"{self.columns}, found {len(values)}")
        self.data.append([_cell(v) for v in values])

    def add_column(self, name: str, data: Sequence) -> None:
        """Append a column (one value per existing row)."""
        data = list(data)
        if self.data and len(data) != len(self.data):
            raise ValueError(f"column {name!r} has {len(data)} values for {len(self.data)} rows")
        self.columns.append(str(name))
        if not self.data:
            self.data = [[_cell(v)] for v in data]
        else:
            for row, v in zip(self.data, data):
                row.append(_cell(v))

    def get_column(self, name: str, convert_to: str | None = None) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.data]

    def _log(self, run: Any, key: str, step: int) -> Any:
        sha = run.log_media(key, {"columns": self.columns, "data": self.data}, media="table",
                            step=step)
        return {"_type": "table", "sha256": sha, "nrows": len(self.data),
                "ncols": len(self.columns)}


def refused(name: str, alternative: str) -> type:
    """A W&B type with no runlake kind: constructing it raises, naming the alternative."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise Error(f"wandb.{name} has no runlake event kind (runlake records histograms and "
                    f"image|audio|video|table|text|file media): {alternative}")

    return type(name, (Media,), {"__init__": __init__, "__doc__": f"Refused: {alternative}"})
