"""The pipeline's sans-I/O models against hand-computed expectations (spec.join_buffer, cascade, lazy_payload, stale_filter)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spec.cascade import Cascade, softmax_confidence
from spec.join_buffer import JOIN_SKEW, JOIN_SUPERSEDED, JOIN_UNMATCHED, InputExpired, JoinBuffer, JoinFired
from spec.lazy_payload import LazyPayload
from spec.pipeline import PipelineSpec
from spec.stale_filter import StaleFilter
from spec.validation import ConfigError


def _offer(join, request_id, source, t):
    return join.offer(now_s=t, request_id=request_id, source=source, made_s=t)


def test_a_join_fires_with_one_input_of_each_source_within_the_skew():
    join = JoinBuffer(sources=["a", "b"], max_skew_s=0.1)
    assert _offer(join, 0, "a", 1.00) == []
    (fired,) = _offer(join, 1, "b", 1.08)
    assert isinstance(fired, JoinFired)
    assert fired.member_ids == (0, 1) and fired.task_id == 1
    assert fired.wait_s == pytest.approx((0.08, 0.0))
    assert join.held == 0  # consumed


def test_inputs_further_apart_than_the_skew_never_join_and_the_old_one_expires():
    join = JoinBuffer(sources=["a", "b"], max_skew_s=0.1)
    _offer(join, 0, "a", 1.0)
    (expired,) = _offer(join, 1, "b", 1.2)  # 0.2 s apart: a's input can never join (any b is newer still)
    assert expired == InputExpired(request_id=0, at_s=1.2, reason=JOIN_SKEW)
    (fired,) = _offer(join, 2, "a", 1.25)
    assert fired.member_ids == (2, 1)
    assert join.expired == 1


def test_a_newer_input_of_the_same_source_supersedes_the_held_one_and_close_expires_the_rest():
    join = JoinBuffer(sources=["a", "b", "c"], max_skew_s=1.0)
    _offer(join, 0, "a", 0.0)
    (sup,) = _offer(join, 1, "a", 0.5)
    assert sup.request_id == 0 and sup.reason == JOIN_SUPERSEDED
    _offer(join, 2, "b", 0.6)
    left = join.close(2.0)
    assert sorted(e.request_id for e in left) == [1, 2] and {e.reason for e in left} == {JOIN_UNMATCHED}
    assert join.expired == 3 and join.fired == 0


def test_random_streams_never_join_inputs_beyond_the_skew_and_every_input_ends_once():
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 20, 400))
    sources = rng.choice(["a", "b"], 400)
    join = JoinBuffer(sources=["a", "b"], max_skew_s=0.05)
    ended = []
    for i, (t, s) in enumerate(zip(times, sources)):
        for fact in _offer(join, i, s, float(t)):
            if isinstance(fact, JoinFired):
                made = [times[m] for m in fact.member_ids]
                assert max(made) - min(made) <= 0.05
                ended += list(fact.member_ids)
            else:
                ended.append(fact.request_id)
    ended += [e.request_id for e in join.close(21.0)]
    assert sorted(ended) == list(range(400))
    assert join.fired * 2 + join.expired == 400


def test_join_settings_are_checked():
    with pytest.raises(ConfigError, match="pipeline.join.sources"):
        JoinBuffer(sources=["a"], max_skew_s=0.1)
    with pytest.raises(ConfigError, match="pipeline.join.max_skew_s"):
        JoinBuffer(sources=["a", "b"], max_skew_s=-1)


def test_stale_filter_drops_inputs_older_than_max_age_with_the_reason():
    stale = StaleFilter(max_age_s=0.5)
    assert stale.check(now_s=1.4, made_s=1.0) is None
    assert stale.check(now_s=1.6, made_s=1.0) == "stale"
    assert stale.dropped == 1


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_cascade_escalates_its_set_share_within_a_binomial_interval(share):
    cascade = Cascade(cheap="edge", big="cloud", escalate_share=share, seed=7)
    n = 4000
    escalated = sum(cascade.escalates(i) for i in range(n))
    half_width = 3.3 * math.sqrt(share * (1 - share) / n)  # 99.9% normal interval of a binomial share
    assert abs(escalated / n - share) < half_width
    again = Cascade(cheap="edge", big="cloud", escalate_share=share, seed=7)
    assert [again.escalates(i) for i in range(50)] == [cascade.escalates(i) for i in range(50)]  # seeded


def test_a_threshold_cascade_escalates_the_samples_share_below_the_threshold():
    samples = [0.2, 0.4, 0.6, 0.8]
    cascade = Cascade(cheap="edge", big="cloud", threshold=0.5, confidence_samples=samples, seed=1)
    assert cascade.expected_share() == 0.5
    n = 4000
    share = sum(cascade.escalates(i) for i in range(n)) / n
    assert abs(share - 0.5) < 3.3 * math.sqrt(0.25 / n)
    assert cascade.escalates(0, confidence=0.49) and not cascade.escalates(0, confidence=0.51)
    assert softmax_confidence(np.array([[0.0, 0.0]]))[0] == pytest.approx(0.5)


def test_cascade_settings_name_the_field():
    with pytest.raises(ConfigError, match="escalate_share"):
        Cascade(cheap="edge", big="cloud")
    with pytest.raises(ConfigError, match="pipeline.cascade.threshold"):
        Cascade(cheap="edge", big="cloud", threshold=1.5)


def test_lazy_bytes_are_references_plus_reads_times_the_payload_exactly():
    lazy = LazyPayload(read_probability=0.3, ref_size_bytes=64, seed=5)
    n, size = 1000, 10_000
    reads = sum(lazy.reads(i, "cam") for i in range(n))
    assert sum(lazy.moved_bytes(i, "cam", size) for i in range(n)) == n * 64 + reads * size
    assert abs(reads / n - 0.3) < 3.3 * math.sqrt(0.21 / n)
    eager = LazyPayload(enabled=False)
    assert eager.moved_bytes(0, "cam", size) == size
    rule = LazyPayload(read_sources=["cam0"], ref_size_bytes=10)
    assert rule.moved_bytes(0, "cam0", 100) == 110 and rule.moved_bytes(1, "cam1", 100) == 10


def test_the_pipeline_block_names_a_bad_field():
    with pytest.raises(ConfigError, match=r"pipeline\.joins"):
        PipelineSpec.from_config({"joins": {}})
    with pytest.raises(ConfigError, match=r"pipeline\.lazy\.read_prob"):
        PipelineSpec.from_config({"lazy": {"read_prob": 0.5}})
    with pytest.raises(ConfigError, match=r"pipeline\.stale\.max_age_s"):
        PipelineSpec.from_config({"stale": {"max_age_s": 0}})
    assert PipelineSpec.from_config(None) is None
