"""Data lineage without hand-written calls: which items each training step consumed.

Why it exists: "which samples did this run (or checkpoint) see, with which augmentation?"
must be answerable without the user calling ``run.log_data`` in the loop. :func:`track`
wraps a ``DataLoader`` (or a map-style ``Dataset``) and records one ``data`` event per
batch: the item ids, split, epoch, per-item load time and augmentation parameters.

How it works with worker processes: the loader is rebuilt around the same sampler (so
shuffling, seeds and ``DistributedSampler`` behave exactly as before) with two picklable
wrappers. In the worker, the dataset wrapper returns ``(index, augment, load_ms, item)``
and the collate wrapper returns ``(indices, augments, load_ms, batch)`` with the user's
``collate_fn`` applied to the items. In the main process the loader wrapper unpacks that,
records the event and yields the original batch. Nothing crosses processes except a few
ints per item.

Item ids, first that applies: ``id_fn(index) -> str``; the file path when the dataset has
``.samples`` or ``.imgs`` (torchvision ``ImageFolder``/``DatasetFolder``: ``(path,
class)`` pairs) or ``.files`` (a list of paths); through ``torch.utils.data.Subset`` to the
underlying dataset's id; else the dataset index as a string.

Augmentation protocol (document this to dataset authors), first that applies:

* ``__getitem__`` returns a dict with an ``"_augment"`` entry (a JSON-able dict); the entry
  is removed before collation;
* the dataset has a ``last_augment(index) -> dict | None`` method, called right after
  ``__getitem__(index)`` in the same (worker) process.

Epochs: the ``epoch`` of the sampler when it has one (``DistributedSampler.set_epoch``),
else ``start_epoch`` plus the number of passes started over this loader
(:meth:`TrackedLoader.set_epoch` overrides). Pass ``start_epoch`` when resuming.

Steps: events carry ``step=None``, which the run records as "the step the next ``log()``
will record" (``run.step + 1``): batches are loaded before their step's metrics.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

__all__ = ["TrackedDataset", "TrackedLoader", "item_id_resolver", "track"]

AUGMENT_KEY = "_augment"


def item_id_resolver(dataset: Any, id_fn: Callable[[int], Any] | None = None) -> Callable[[int], str]:
    """The function mapping a dataset index to an item id (see the module docstring)."""
    if id_fn is not None:
        return lambda i: str(id_fn(i))
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        inner = item_id_resolver(dataset.dataset)
        indices = dataset.indices
        return lambda i: inner(int(indices[i]))
    for attr in ("samples", "imgs"):
        pairs = getattr(dataset, attr, None)
        if isinstance(pairs, (list, tuple)) and pairs and isinstance(pairs[0], (list, tuple)):
            return lambda i: str(pairs[i][0])
    files = getattr(dataset, "files", None)
    if isinstance(files, (list, tuple)) and files:
        return lambda i: str(files[i])
    return str


def _augment_reader(dataset: Any) -> Callable[[int], Any] | None:
    fn = getattr(dataset, "last_augment", None)
    return fn if callable(fn) else None


def _fetch(dataset: Any, index: int) -> tuple[Any, Any, float]:
    t0 = time.perf_counter()
    item = dataset[index]
    load_ms = (time.perf_counter() - t0) * 1e3
    augment = None
    if isinstance(item, dict) and AUGMENT_KEY in item:
        item = dict(item)
        augment = item.pop(AUGMENT_KEY)
    else:
        reader = _augment_reader(dataset)
        if reader is not None:
            augment = reader(index)
    return item, augment, load_ms


class _IndexedDataset:
    """Worker side: returns ``(index, augment, load_ms, item)``. Picklable."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        item, augment, load_ms = _fetch(self.dataset, index)
        return (index, augment, load_ms, item)


class _IndexedCollate:
    """Worker side: splits the tags from the items and collates the items. Picklable."""

    def __init__(self, collate_fn: Callable, batched: bool) -> None:
        self.collate_fn = collate_fn
        self.batched = batched

    def __call__(self, batch: Any) -> tuple:
        if not self.batched:
            index, augment, load_ms, item = batch
            return ([index], [augment], [load_ms], self.collate_fn(item))
        return (
            [t[0] for t in batch],
            [t[1] for t in batch],
            [t[2] for t in batch],
            self.collate_fn([t[3] for t in batch]),
        )


class _Recorder:
    """Main-process side shared by the wrappers: ids, dataset registration, events."""

    def __init__(self, dataset: Any, run: Any, split: str, id_fn, source, name) -> None:
        self.run = run
        self.split = split
        self.source = source
        self.name = name or type(dataset).__name__
        self.dataset = dataset
        self.item_id = item_id_resolver(dataset, id_fn)
        self._registered = False

    def record(self, indices: list[int], augments: list[Any], load_ms: list[float], epoch: int | None) -> None:
        run = self.run
        if not self._registered:
            self._registered = True
            if getattr(run, "rank", 0) == 0:
                size = len(self.dataset) if hasattr(self.dataset, "__len__") else None
                run.log_dataset(self.name, items=size, source=self.source, split=self.split)
        ids = [self.item_id(int(i)) for i in indices]
        augment = augments if any(a is not None for a in augments) else None
        run.log_data(ids, split=self.split, epoch=epoch, source=self.source, dataset=self.name,
                     augment=augment, load_ms=load_ms)


class TrackedLoader:
    """A ``DataLoader`` stand-in that records each batch's items; yields the same batches.

    Create it with :func:`track`. Attributes of the original loader are reachable through
    this object (``len()``, ``.dataset``, ``.batch_size``, ``.sampler``...).
    """

    def __init__(self, loader: Any, run: Any, *, split: str, id_fn, source, dataset_name, start_epoch: int) -> None:
        from torch.utils.data import DataLoader, IterableDataset

        if isinstance(loader.dataset, IterableDataset):
            from runlake.schemas.errors import ConfigError

            raise ConfigError(
                "track() needs a map-style dataset (with __getitem__ and __len__) to know item "
                "ids; for an IterableDataset call run.log_data(ids, ...) in the loop instead"
            )
        self.original = loader
        self._recorder = _Recorder(loader.dataset, run, split, id_fn, source, dataset_name)
        batched = loader.batch_sampler is not None
        kwargs: dict[str, Any] = dict(
            num_workers=loader.num_workers,
            collate_fn=_IndexedCollate(loader.collate_fn, batched),
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
            generator=loader.generator,
            persistent_workers=loader.persistent_workers,
            pin_memory_device=loader.pin_memory_device,
        )
        if loader.num_workers > 0:
            kwargs["prefetch_factor"] = loader.prefetch_factor
        if hasattr(loader, "in_order"):
            kwargs["in_order"] = loader.in_order
        if batched:
            kwargs["batch_sampler"] = loader.batch_sampler
        else:
            kwargs.update(batch_size=None, sampler=loader.sampler)
        self._loader = DataLoader(_IndexedDataset(loader.dataset), **kwargs)
        self._passes = 0
        self._start_epoch = start_epoch
        self._epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch recorded for the next passes (also forwarded to the sampler)."""
        self._epoch = int(epoch)
        sampler = getattr(self.original, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def _current_epoch(self) -> int:
        sampler_epoch = getattr(self.original.sampler, "epoch", None)
        if isinstance(sampler_epoch, int):
            return sampler_epoch
        if self._epoch is not None:
            return self._epoch
        return self._start_epoch + self._passes - 1

    def __iter__(self) -> Iterator[Any]:
        self._passes += 1
        epoch = self._current_epoch()
        record = self._recorder.record
        for indices, augments, load_ms, batch in self._loader:
            record(indices, augments, load_ms, epoch)
            yield batch

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        if name == "original":  # not set yet (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.original, name)


class TrackedDataset:
    """A map-style dataset wrapper recording every item it serves, one event per item.

    For use in the main process only (iterating a dataset by hand, or a ``DataLoader``
    with ``num_workers=0``). Prefer ``track(DataLoader(...))``, which records one event per
    batch and works with worker processes.
    """

    def __init__(self, dataset: Any, run: Any, *, split: str, id_fn, source, dataset_name, start_epoch: int) -> None:
        self.dataset = dataset
        self.epoch: int | None = start_epoch
        self._recorder = _Recorder(dataset, run, split, id_fn, source, dataset_name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        from torch.utils.data import get_worker_info

        if get_worker_info() is not None:
            from runlake.schemas.errors import ConfigError

            raise ConfigError(
                "a dataset wrapped by track() cannot record from a DataLoader worker process; "
                "wrap the DataLoader instead: track(DataLoader(dataset, num_workers=...), run)"
            )
        item, augment, load_ms = _fetch(self.dataset, index)
        self._recorder.record([index], [augment], [load_ms], self.epoch)
        return item

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def track(
    loader_or_dataset: Any,
    run: Any,
    *,
    split: str = "train",
    id_fn: Callable[[int], Any] | None = None,
    source: str | None = None,
    dataset: str | None = None,
    start_epoch: int = 0,
) -> TrackedLoader | TrackedDataset:
    """Record the items a ``DataLoader`` (or ``Dataset``) serves as ``data`` events.

    Args:
        loader_or_dataset: a ``torch.utils.data.DataLoader`` over a map-style dataset
            (recommended: one event per batch, any ``num_workers``), or a map-style
            ``Dataset`` (one event per item, main process only).
        run: the runlake Run.
        split: recorded with every item (``"train"``, ``"val"``...).
        id_fn: ``index -> id``; default: file path when the dataset exposes
            ``.samples``/``.imgs``/``.files``, else the index.
        source: where the items come from (a path, URL or name), stored per item.
        dataset: the dataset name registered once (``dataset`` event; rank 0 only);
            default the dataset's class name.
        start_epoch: the epoch of the first pass (set it when resuming).

    Returns:
        A :class:`TrackedLoader` (iterate it like the loader) or :class:`TrackedDataset`.

    Raises:
        ConfigError: an iterable-style dataset (ids unknown) or an unsupported object.

    Example::

        loader = runlake.torch.track(DataLoader(ds, batch_size=64, num_workers=4), run)
        for x, y in loader:   # each batch recorded: ids, split, epoch, augmentation
            ...
    """
    from torch.utils.data import DataLoader

    kwargs = dict(split=split, id_fn=id_fn, source=source, dataset_name=dataset, start_epoch=start_epoch)
    if isinstance(loader_or_dataset, DataLoader):
        return TrackedLoader(loader_or_dataset, run, **kwargs)
    if hasattr(loader_or_dataset, "__getitem__") and hasattr(loader_or_dataset, "__len__"):
        return TrackedDataset(loader_or_dataset, run, **kwargs)
    from runlake.schemas.errors import ConfigError

    raise ConfigError(
        f"track() expects a torch DataLoader or a map-style Dataset, got {type(loader_or_dataset).__name__}"
    )
