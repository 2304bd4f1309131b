"""Healthy runs stay quiet, sick runs are found: a corpus written through the real emitter,
ingested into a real store, judged by the real detectors (``_corpus``). The full corpus
(>= 200 healthy runs) is ``bench/bench_detectors_corpus.py``; this is a smaller one."""

from __future__ import annotations

import pytest

from . import _corpus

CORPUS_RESULTS: dict = {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus.run_corpus(tmp_path_factory.mktemp("corpus"), n_healthy=40, sick_per_kind=1, seed=11)


def test_healthy_runs_raise_no_warning(corpus):
    """40 healthy runs (warm-up + cosine/step/linear lr, fp16 loss scales at their cap or
    halving on overflow, log-normal grad norms, evals every N steps, resumed runs, DDP
    ranks, per-parameter grad norms) get no finding of severity warning or critical."""
    CORPUS_RESULTS.update({k: v for k, v in corpus.items() if not isinstance(v, list)})
    assert corpus["healthy_runs"] == 40
    assert corpus["false_alarms"] == []


def test_healthy_runs_raise_no_online_alert(corpus):
    """The emitter's online checks (NaN, exploding) raise nothing on the healthy runs
    either: inf grad norms of fp16 overflow steps are skipped steps, not alerts."""
    assert corpus["online_false_alarms"] == []


def test_every_sick_run_is_found(corpus):
    """Each sick run (NaN, inf grad, mid and early loss spikes, divergence, plateau, grad
    spike and growth, a watched step exploding on every parameter, vanishing gradients,
    lr zero and jump, throughput drop, memory leak, overfitting, leakage, duplicates,
    crash) gets a warning+ finding of the planted kind, on its key, near its steps."""
    assert corpus["sick_runs"] == len(_corpus.SICK_KINDS)
    assert corpus["missed"] == []
    assert corpus["recall"] == 1.0
