"""Model health metrics from optimizer hooks: gradient, weight and update statistics.

Why it exists: exploding or vanishing gradients, dead layers and a learning rate that moves
weights too much or too little show up in a handful of numbers per layer. :func:`watch`
records them without any call in the training loop.

Cost guarantee: the work happens on every ``every``-th optimizer step only. On the other
steps the two hooks (before and after ``optimizer.step()``) do one dictionary lookup and
one modulo, about a microsecond (``bench/bench_watch.py`` measures the total overhead; see
``docs/performance.md``). On a watched step the pre-step hook snapshots the parameters (one
fused copy, freed right after the step) and the post-step hook computes per-tensor norms
with fused ``torch._foreach_norm`` kernels and moves all results to the CPU in a single
transfer.

Metric keys (``<name>`` is the parameter's name from ``named_parameters()``):

* ``grad/norm`` (global L2), ``grad/norm/<name>``, ``grad/mean``, ``grad/std``,
  ``grad/max_abs`` over all gradient entries;
* ``param/norm``, ``param/norm/<name>``, ``param/mean``, ``param/std``, ``param/max_abs``;
* ``update/ratio`` = ||theta_after - theta_before|| / ||theta_after|| over all parameters,
  and ``update/ratio/<name>`` per tensor (healthy training is often around 1e-3);
* ``cuda/allocated_mib``, ``cuda/reserved_mib``, ``cuda/peak_mib`` when the model is on a
  CUDA device (untested without a GPU);
* with ``log_histograms=True`` also ``grad|param/{mean,std,max_abs,p01,p50,p99}/<name>``
  per tensor (quantiles computed on at most 1M entries per tensor, strided: dashboards and
  online checks read them as metrics), and one ``histogram`` event per tensor,
  ``grad/<name>`` and ``param/<name>``: 64 equal-width buckets between the tensor's min and
  max counting every entry, with its min/max/num/sum/sum_squares (from the norms and sums
  already computed). The quantiles' sort also yields the counts (a ``searchsorted`` of 64
  edges), so histograms cost next to nothing beyond the quantiles; every tensor's numbers
  reach the CPU in one transfer. A tensor over 1M entries is counted by ``torch.histc``
  (float32 counts); one holding NaN/Inf is histogrammed by ``run.log_histogram(values=...)``,
  which leaves those values out and counts them.

Gradients are read as they are when ``optimizer.step()`` runs: with AMP's ``GradScaler``
they are still scaled unless ``scaler.unscale_(optimizer)`` was called first.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable

from runlake.emitter.integrations.throughput import log_at
from runlake.schemas.errors import ConfigError

__all__ = ["HISTOGRAM_BINS", "WatchHandle", "watch"]

_QUANTILES = (0.01, 0.5, 0.99)
_MAX_QUANTILE_ENTRIES = 1 << 20
HISTOGRAM_BINS = 64


class WatchHandle:
    """The hooks installed by :func:`watch`; call :meth:`remove` to uninstall them.

    Attributes:
        steps: optimizer steps seen so far.
        every: the interval in optimizer steps.
    """

    def __init__(
        self,
        model: Any,
        run: Any,
        every: int,
        log_histograms: bool,
        optimizer: Any,
        step_fn: Callable[[], int | None] | None,
    ) -> None:
        import torch

        self._torch = torch
        self.run = run
        self.every = every
        self.log_histograms = log_histograms
        self.steps = 0
        self.names: list[str] = []
        self.params: list[Any] = []
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.names.append(name)
                self.params.append(p)
        self._ids = {id(p) for p in self.params}
        # id(optimizer) -> (a weak reference to it, whether it steps our parameters): the
        # reference proves the id still names that optimizer (a freed one's id is reused)
        self._owns: dict[int, tuple[Any, bool]] = {}
        self._prev: list[Any] | None = None
        self._step_fn = step_fn
        if optimizer is not None:
            self._owns[id(optimizer)] = (weakref.ref(optimizer), True)
            hooks = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]
        else:
            from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

            hooks = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]
        self._hooks = hooks

    def remove(self) -> None:
        """Uninstall the hooks (idempotent) and drop any snapshot."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._prev = None

    def __enter__(self) -> "WatchHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # The hooks: everything below the early return runs on watched steps only.

    def _owned(self, opt: Any) -> bool:
        """Whether ``opt`` steps the watched parameters of a live run: a global hook of a
        finished run stays installed (torch iterates its hooks while calling them, so one
        cannot remove itself) but does nothing; ``remove()`` uninstalls it."""
        if self.run.status is not None:
            return False
        known = self._owns.get(id(opt))
        if known is None or known[0]() is not opt:
            ids = self._ids
            known = (weakref.ref(opt), any(id(p) in ids for g in opt.param_groups for p in g["params"]))
            self._owns[id(opt)] = known
        return known[1]

    def _pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        if (self.steps + 1) % self.every or not self._owned(opt):
            return
        with self._torch.no_grad():
            self._prev = self._torch._foreach_mul(self.params, 1.0)

    def _post(self, opt: Any, args: Any, kwargs: Any) -> None:
        if not self._owned(opt):
            return
        self.steps += 1
        if self.steps % self.every:
            return
        prev, self._prev = self._prev, None
        values, hists = self._measure(prev)
        run = self.run
        step = self._step_fn() if self._step_fn is not None else run.step + 1
        log_at(run, values, step)
        for key, edges, counts, stats, tensor in hists:
            if edges is None:  # NaN/Inf inside: the emitter's own path leaves them out, counted
                run.log_histogram(key, tensor, bins=HISTOGRAM_BINS, step=step)
            else:
                run.log_histogram(key, edges=edges, counts=counts, stats=stats, step=step)

    def compute(self, prev: list[Any] | None = None) -> dict[str, float]:
        """The statistics for the current parameters and gradients (see module docstring).

        Args:
            prev: the parameters before the last update (same order as ``self.params``),
                for the update ratios; None leaves them out.

        Returns:
            A flat mapping of metric key to float.
        """
        return self._measure(prev)[0]

    def _measure(self, prev: list[Any] | None) -> tuple[dict[str, float], list[tuple]]:
        """The metrics, and (with ``log_histograms``) the histograms as ``(key, edges,
        counts, stats, tensor)``; edges None for a tensor with NaN/Inf (see module docstring)."""
        torch = self._torch
        out: dict[str, float] = {}
        with torch.no_grad():
            gidx = [i for i, p in enumerate(self.params) if p.grad is not None]
            grads = [self.params[i].grad for i in gidx]
            parts: list[tuple[str, list[Any]]] = []
            parts.append(("param", self._stats(self.params)))
            if grads:
                parts.append(("grad", self._stats(grads)))
            if prev is not None:
                diff = torch._foreach_sub(self.params, prev)
                parts.append(("dnorm", torch._foreach_norm(diff)))
            flat = [t if t.dtype == torch.float32 else t.float() for _, ts in parts for t in ts]
            numbers = torch.stack(flat).cpu().tolist() if flat else []
        pos = 0
        unpacked: dict[str, list[float]] = {}
        for label, ts in parts:
            unpacked[label] = numbers[pos : pos + len(ts)]
            pos += len(ts)
        numels = [p.numel() for p in self.params]
        self._summarise(out, "param", self.names, numels, unpacked["param"])
        if grads:
            self._summarise(out, "grad", [self.names[i] for i in gidx], [numels[i] for i in gidx], unpacked["grad"])
        if prev is not None:
            dn, pn = unpacked["dnorm"], unpacked["param"][: len(self.params)]
            total_d = math.sqrt(sum(x * x for x in dn))
            total_p = math.sqrt(sum(x * x for x in pn))
            out["update/ratio"] = total_d / total_p if total_p > 0 else math.nan
            for name, d, p in zip(self.names, dn, pn):
                out[f"update/ratio/{name}"] = d / p if p > 0 else math.nan
        hists: list[tuple] = []
        if self.log_histograms:
            with torch.no_grad():
                jobs = self._distributions("param", self.names, self.params, unpacked["param"])
                if grads:
                    jobs += self._distributions("grad", [self.names[i] for i in gidx], grads, unpacked["grad"])
                rows = torch.stack([j[1] for j in jobs]).cpu().tolist() if jobs else []  # one transfer
            hists = self._collect(out, jobs, rows)
        if self.params and self.params[0].is_cuda:  # pragma: no cover - needs a GPU
            dev = self.params[0].device
            mib = 1 << 20
            out["cuda/allocated_mib"] = torch.cuda.memory_allocated(dev) / mib
            out["cuda/reserved_mib"] = torch.cuda.memory_reserved(dev) / mib
            out["cuda/peak_mib"] = torch.cuda.max_memory_allocated(dev) / mib
        return out, hists

    def _stats(self, tensors: list[Any]) -> list[Any]:
        """Per tensor: L2 norm, min, max, sum; flattened as [norms..., mins..., maxes..., sums...].

        min/max come from ``aminmax`` (one pass): on CPU the inf-norm kernels are ~10x slower.
        """
        torch = self._torch
        norms = torch._foreach_norm(tensors)
        lows, highs = [], []
        for t in tensors:
            lo, hi = torch.aminmax(t) if t.numel() else (t.new_zeros((), dtype=torch.float32),) * 2
            lows.append(lo)
            highs.append(hi)
        sums = [t.sum() for t in tensors]
        return [*norms, *lows, *highs, *sums]

    @staticmethod
    def _summarise(out: dict, prefix: str, names: list[str], numels: list[int], numbers: list[float]) -> None:
        n = len(names)
        norms, lows, highs, sums = (numbers[i * n:(i + 1) * n] for i in range(4))
        sumsq = sum(x * x for x in norms)
        count = sum(numels)
        out[f"{prefix}/norm"] = math.sqrt(sumsq)
        for name, v in zip(names, norms):
            out[f"{prefix}/norm/{name}"] = v
        if count:
            mean = sum(sums) / count
            out[f"{prefix}/mean"] = mean
            out[f"{prefix}/std"] = math.sqrt(max(sumsq / count - mean * mean, 0.0))
            out[f"{prefix}/max_abs"] = max(max(highs), -min(lows))

    def _distributions(self, prefix: str, names: list[str], tensors: list[Any],
                       numbers: list[float]) -> list[tuple]:
        """Per tensor, on its device: ``(key suffix, row, edges, stats, tensor)``.

        ``row`` = mean, std, max_abs, p01, p50, p99 of (at most 1M strided entries of) the
        tensor, then its 64 bucket counts. One sort serves both: the quantiles are read
        from it (linear interpolation, as ``torch.quantile``) and the counts are
        ``searchsorted`` against the edges rounded up to float32 (exactly the entries in
        ``[edges[i], edges[i+1])``, the last bucket closed). A tensor over 1M entries is
        counted whole by ``torch.histc``; one holding NaN/Inf keeps ``torch.quantile`` and
        gets no edges (``log_histogram(values=...)`` histograms it, see ``_post``).
        """
        torch = self._torch
        n = len(names)
        norms, lows, highs, sums = (numbers[i * n:(i + 1) * n] for i in range(4))
        jobs = []
        for name, t, norm, lo, hi, total in zip(names, tensors, norms, lows, highs, sums):
            flat = t.detach().float().flatten()
            size = flat.numel()
            if not size:
                continue
            sample = flat if size <= _MAX_QUANTILE_ENTRIES else flat[:: -(-size // _MAX_QUANTILE_ENTRIES)]
            head = [sample.mean(), sample.std(unbiased=False), sample.abs().max()]
            if not (math.isfinite(lo) and math.isfinite(hi)):
                q = torch.quantile(sample, torch.tensor(_QUANTILES, device=sample.device))
                row = torch.cat([torch.stack(head), q, q.new_zeros(HISTOGRAM_BINS)])
                jobs.append((f"{prefix}/{name}", row, None, None, t.detach()))
                continue
            ordered = sample.sort().values
            m = ordered.numel()
            pos = [q * (m - 1) for q in _QUANTILES]
            below = [int(p) for p in pos]
            at = torch.tensor(below + [min(b + 1, m - 1) for b in below], device=flat.device)
            frac = torch.tensor([p - b for p, b in zip(pos, below)], device=flat.device)
            picked = ordered[at]
            quantiles = torch.lerp(picked[:3], picked[3:], frac)
            a, b = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)  # numpy's rule for one value
            width = (b - a) / HISTOGRAM_BINS
            edges = [a + i * width for i in range(HISTOGRAM_BINS)] + [b]
            if size <= _MAX_QUANTILE_ENTRIES:
                starts = torch.searchsorted(ordered, _float32_ceil(torch, edges[:-1]).to(flat.device))
                counts = torch.diff(starts, append=starts.new_tensor([m])).float()
            else:
                counts = torch.histc(flat, bins=HISTOGRAM_BINS, min=a, max=b)
            row = torch.cat([torch.stack(head), quantiles, counts])
            stats = {"min": lo, "max": hi, "num": float(size), "sum": total, "sum_squares": norm * norm}
            jobs.append((f"{prefix}/{name}", row, edges, stats, None))
        return jobs

    @staticmethod
    def _collect(out: dict, jobs: list[tuple], rows: list[list[float]]) -> list[tuple]:
        """Fill the per-tensor metrics into ``out``; the histograms as ``(key, edges,
        counts, stats, tensor)``."""
        hists = []
        for (key, _, edges, stats, tensor), row in zip(jobs, rows):
            prefix, name = key.split("/", 1)
            for label, v in zip(("mean", "std", "max_abs", "p01", "p50", "p99"), row):
                out[f"{prefix}/{label}/{name}"] = v
            hists.append((key, edges, row[6:] if edges is not None else None, stats, tensor))
        return hists


def _float32_ceil(torch: Any, values: list[float]) -> Any:
    """The smallest float32 >= each value: ``x >= v`` <=> ``x >= ceil32(v)`` for float32 ``x``."""
    t = torch.tensor(values, dtype=torch.float64)
    f = t.float()
    return torch.where(f.double() < t, torch.nextafter(f, torch.full_like(f, math.inf)), f)


def watch(
    model: Any,
    run: Any,
    every: int = 50,
    *,
    log_histograms: bool = False,
    optimizer: Any = None,
    step_fn: Callable[[], int | None] | None = None,
) -> WatchHandle:
    """Record gradient, weight and update statistics every ``every`` optimizer steps.

    Args:
        model: a ``torch.nn.Module``; its parameters with ``requires_grad`` are watched.
        run: the runlake Run receiving ``metrics`` events.
        every: interval in optimizer steps (>= 1). The default 50 keeps the overhead of a
            small CPU model under 2% (``docs/performance.md``).
        log_histograms: also record per-tensor mean/std/max and quantiles, and a
            histogram event per tensor (``grad/<name>``, ``param/<name>``, 64 buckets).
        optimizer: hook this optimizer only. By default every ``torch.optim`` optimizer
            that updates one of the model's parameters is hooked (global hooks); pass it
            when the model's parameters are split over several optimizers, so a training
            step counts once.
        step_fn: returns the step to log at; default: the step the next ``run.log()``
            will record (``run.step + 1``, as for data events), since ``optimizer.step()``
            usually runs before that step's metrics are logged. ``run.step`` is not moved.

    Returns:
        A :class:`WatchHandle`; ``handle.remove()`` uninstalls the hooks.

    Raises:
        ConfigError: ``every`` is not a positive integer.

    Example::

        handle = runlake.torch.watch(model, run, every=100)
        ...  # train as usual: optimizer.step() triggers the hooks
        handle.remove()
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError(f"watch(every=...) expects a positive integer number of optimizer steps, got {every!r}")
    return WatchHandle(model, run, every, log_histograms, optimizer, step_fn)
