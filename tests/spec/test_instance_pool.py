"""The serverless pool's sans-I/O model, checked against its own guarantees."""

from __future__ import annotations

import dataclasses
import random

import pytest

from spec.instance_pool import (
    ExpireAt,
    InstancePool,
    InstancePoolError,
    JobFailed,
    RetireInstance,
    RunOnInstance,
    StartInstance,
    WarmCountChanged,
)
from spec.pricing import ServerlessPricing


def pool(*, max_instances=10, keep_alive_s=60.0, pricing=None) -> InstancePool:
    return InstancePool(max_instances=max_instances, keep_alive_s=keep_alive_s, pricing=pricing)


def start(p: InstancePool, now_s: float, job, memory_mb: int = 1024) -> int:
    """Submit a job that must cold start; report the start over; return the instance id."""
    (action,) = p.submit(now_s, job, memory_mb)
    assert isinstance(action, StartInstance) and action.job == job and action.memory_mb == memory_mb
    assert p.instance_started(now_s, action.instance_id) == (WarmCountChanged(warm=p.warm),)
    return action.instance_id


def test_actions_are_frozen_slotted_keyword_only():
    action = StartInstance(instance_id=1, memory_mb=1024, job="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.instance_id = 2
    assert not hasattr(action, "__dict__")
    with pytest.raises(TypeError):
        RunOnInstance(1, "a")


def test_first_job_starts_cold_then_the_instance_is_warm():
    p = pool()
    assert p.submit(0.0, "a", 1024) == (StartInstance(instance_id=1, memory_mb=1024, job="a"),)
    assert p.state(1) == "starting" and p.job(1) == "a" and p.warm == 0
    assert p.instance_started(0.5, 1) == (WarmCountChanged(warm=1),)
    assert p.state(1) == "busy" and p.warm == 1 and p.cold_starts == 1


def test_waiting_jobs_run_in_fifo_order_at_the_cap():
    p = pool(max_instances=1)
    start(p, 0.0, "a")
    assert p.submit(1.0, "b", 1024) == ()
    assert p.submit(2.0, "c", 1024) == ()
    assert p.submit(3.0, "d", 1024) == ()
    assert p.finished(4.0, 1) == (RunOnInstance(instance_id=1, job="b"),)
    assert p.finished(5.0, 1) == (RunOnInstance(instance_id=1, job="c"),)
    assert p.finished(6.0, 1) == (RunOnInstance(instance_id=1, job="d"),)
    assert p.cold_starts == 1  # the waiting jobs reused the warm instance


def test_warm_reuse_takes_the_most_recently_used_idle_instance():
    p = pool()
    ids = [start(p, 0.0, job) for job in "abc"]
    p.finished(1.0, ids[1])
    p.finished(2.0, ids[0])
    p.finished(3.0, ids[2])
    assert p.idle_ids(1024) == [ids[1], ids[0], ids[2]]
    assert p.submit(4.0, "d", 1024) == (RunOnInstance(instance_id=ids[2], job="d"),)
    assert p.submit(4.0, "e", 1024) == (RunOnInstance(instance_id=ids[0], job="e"),)
    assert p.cold_starts == 3


def test_idle_instance_of_another_size_is_not_reused_below_the_cap():
    p = pool(max_instances=2)
    a = start(p, 0.0, "a", 1024)
    p.finished(1.0, a)
    assert p.submit(2.0, "b", 2048) == (StartInstance(instance_id=2, memory_mb=2048, job="b"),)
    assert p.idle_ids(1024) == [a]


def test_at_the_cap_the_least_recently_used_idle_instance_of_another_size_is_reclaimed():
    p = pool(max_instances=3)
    a, b, c = (start(p, 0.0, job, 1024) for job in "abc")
    p.finished(1.0, b)
    p.finished(2.0, a)  # c stays busy
    assert p.submit(3.0, "d", 2048) == (
        RetireInstance(instance_id=b),
        WarmCountChanged(warm=2),
        StartInstance(instance_id=4, memory_mb=2048, job="d"),
    )
    assert p.instances == 3 and p.idle_ids(1024) == [a]


def test_at_the_cap_with_nothing_idle_of_another_size_a_job_waits():
    p = pool(max_instances=1)
    start(p, 0.0, "a", 1024)
    assert p.submit(1.0, "b", 2048) == ()
    assert p.instances == 1 and list(p.waiting) == [("b", 2048)]


def test_a_waiting_job_of_another_size_replaces_the_instance_that_frees():
    p = pool(max_instances=1)
    a = start(p, 0.0, "a", 1024)
    p.submit(1.0, "b", 2048)
    assert p.finished(2.0, a) == (
        RetireInstance(instance_id=a),
        WarmCountChanged(warm=0),
        StartInstance(instance_id=2, memory_mb=2048, job="b"),
    )


def test_keep_alive_expiry_scales_to_zero():
    p = pool(keep_alive_s=10.0)
    a = start(p, 0.0, "a")
    b = start(p, 1.0, "b")
    assert p.finished(5.0, a) == (ExpireAt(instance_id=a, generation=1, at_s=15.0, after_s=10.0),)
    assert p.finished(7.0, b) == (ExpireAt(instance_id=b, generation=1, at_s=17.0, after_s=10.0),)
    assert p.next_expiry_s == 15.0
    assert p.expire(14.9) == ()
    assert p.expire(15.0) == (RetireInstance(instance_id=a), WarmCountChanged(warm=1))
    assert p.next_expiry_s == 17.0
    assert p.expire(100.0) == (RetireInstance(instance_id=b), WarmCountChanged(warm=0))
    assert p.instances == 0 and p.warm == 0 and p.next_expiry_s is None
    # scaled to zero: the next job starts cold again
    assert isinstance(p.submit(200.0, "c", 1024)[0], StartInstance)


def test_an_expiry_timer_is_stale_once_its_instance_was_reused():
    p = pool(keep_alive_s=10.0)
    a = start(p, 0.0, "a")
    (first,) = p.finished(5.0, a)
    p.submit(6.0, "b", 1024)  # reused
    (second,) = p.finished(8.0, a)
    assert second.generation != first.generation
    assert p.expire(first.at_s, instance_id=a, generation=first.generation) == ()  # stale: a stays
    assert p.state(a) == "idle"
    assert p.expire(second.at_s, instance_id=a, generation=second.generation) == (
        RetireInstance(instance_id=a),
        WarmCountChanged(warm=0),
    )
    assert p.expire(second.at_s, instance_id=a, generation=second.generation) == ()  # gone: stale too


def test_an_expiry_timer_fired_early_is_an_error():
    p = pool(keep_alive_s=10.0)
    a = start(p, 0.0, "a")
    (expiry,) = p.finished(5.0, a)
    with pytest.raises(InstancePoolError, match="early"):
        p.expire(14.0, instance_id=a, generation=expiry.generation)


def test_no_keep_alive_retires_at_once():
    p = pool(keep_alive_s=0.0)
    a = start(p, 0.0, "a")
    assert p.finished(1.0, a) == (RetireInstance(instance_id=a), WarmCountChanged(warm=0))
    assert p.instances == 0 and p.next_expiry_s is None


def test_crash_during_cold_start_was_never_warm():
    p = pool(max_instances=1)
    (s,) = p.submit(0.0, "a", 1024)
    p.submit(0.1, "b", 1024)
    actions = p.failed(0.2, s.instance_id)
    assert actions == (JobFailed(instance_id=s.instance_id, job="a"), StartInstance(instance_id=2, memory_mb=1024, job="b"))
    assert p.warm == 0 and p.state(s.instance_id) is None
    # its cold-start timer, which a simulator cannot cancel, fires later and does nothing
    assert p.instance_started(0.5, s.instance_id) == ()
    with pytest.raises(InstancePoolError):
        p.instance_started(0.6, s.instance_id)  # ...once


def test_crash_during_a_run_drops_the_warm_count_and_fails_the_job():
    p = pool(max_instances=1)
    a = start(p, 0.0, "a")
    p.submit(0.1, "b", 2048)
    assert p.failed(1.0, a) == (
        WarmCountChanged(warm=0),
        JobFailed(instance_id=a, job="a"),
        StartInstance(instance_id=2, memory_mb=2048, job="b"),
    )
    assert p.instances == 1


def test_crash_of_an_idle_instance_leaves_the_idle_list():
    p = pool()
    a = start(p, 0.0, "a")
    p.finished(1.0, a)
    assert p.failed(2.0, a) == (WarmCountChanged(warm=0),)
    assert p.idle_ids(1024) == [] and p.next_expiry_s is None
    assert isinstance(p.submit(3.0, "b", 1024)[0], StartInstance)


def test_warm_count_telemetry_follows_every_change():
    p = pool(max_instances=2, keep_alive_s=5.0)
    seen = []

    def feed(actions):
        seen.extend(a.warm for a in actions if isinstance(a, WarmCountChanged))
        return actions

    (s1,) = feed(p.submit(0.0, "a", 1024))
    (s2,) = feed(p.submit(0.0, "b", 1024))
    feed(p.instance_started(1.0, s1.instance_id))
    feed(p.instance_started(1.5, s2.instance_id))
    feed(p.finished(2.0, s1.instance_id))
    feed(p.failed(2.5, s2.instance_id))
    feed(p.expire(7.0))
    assert seen == [1, 2, 1, 0]


def test_close_retires_every_instance_in_start_order():
    p = pool()
    a = start(p, 0.0, "a")
    (s,) = p.submit(0.0, "b", 1024)
    p.finished(1.0, a)
    assert p.close(2.0) == (RetireInstance(instance_id=a), WarmCountChanged(warm=0), RetireInstance(instance_id=s.instance_id))
    with pytest.raises(InstancePoolError, match="after close"):
        p.submit(3.0, "c", 1024)


def test_the_cap_is_never_exceeded_under_random_events():
    rng = random.Random(7)
    p = pool(max_instances=3, keep_alive_s=2.0)
    starting, busy, jobs = set(), set(), 0
    now_s = 0.0
    for _ in range(3000):
        now_s += rng.random()
        roll = rng.random()
        if roll < 0.4:
            jobs += 1
            actions = p.submit(now_s, jobs, rng.choice([1024, 2048]))
        elif roll < 0.6 and starting:
            i = rng.choice(sorted(starting))
            actions = p.instance_started(now_s, i)
            starting.discard(i)
            busy.add(i)
        elif roll < 0.85 and busy:
            i = rng.choice(sorted(busy))
            busy.discard(i)
            actions = p.finished(now_s, i)
        elif roll < 0.9 and (busy or starting):
            i = rng.choice(sorted(busy | starting))
            busy.discard(i)
            starting.discard(i)
            actions = p.failed(now_s, i)
        else:
            actions = p.expire(now_s)
        for action in actions:
            if isinstance(action, StartInstance):
                starting.add(action.instance_id)
            elif isinstance(action, RunOnInstance):
                busy.add(action.instance_id)
            elif isinstance(action, RetireInstance):
                assert action.instance_id not in busy | starting, "a busy or starting instance was retired"
        assert p.instances <= 3
        assert p.warm == p.instances - len(starting)
        assert not p.waiting or not any(p.idle_ids(m) for m in (1024, 2048)), "a job waits beside an idle instance"
        assert all(p.state(i) == "starting" for i in starting) and all(p.state(i) == "busy" for i in busy)
    assert p.peak_instances == 3


@pytest.mark.parametrize("bill_cold_start, expected", [(True, 1.5), (False, 1.0)])
def test_billing_counts_the_cold_start_only_when_the_pricing_says_so(bill_cold_start, expected):
    pricing = ServerlessPricing(price_per_gb_s=1.0, granularity_s=0.001, bill_cold_start=bill_cold_start)
    p = pool(pricing=pricing)
    assert p.batch_cost(duration_s=1.0, cold_start_s=0.5, memory_mb=1024) == pytest.approx(expected)
    assert p.batch_cost(duration_s=1.0, cold_start_s=0.5, memory_mb=2048) == pytest.approx(2 * expected)
    assert p.batch_cost(duration_s=1.0, cold_start_s=0.0, memory_mb=1024) == pytest.approx(1.0)


def test_billing_without_a_pricing_is_an_error():
    with pytest.raises(InstancePoolError, match="pricing"):
        pool().batch_cost(duration_s=1.0, cold_start_s=0.0, memory_mb=1024)


def test_misuse_names_the_drivers_mistake():
    p = pool()
    with pytest.raises(InstancePoolError, match="not alive"):
        p.finished(0.0, 99)
    (s,) = p.submit(0.0, "a", 1024)
    with pytest.raises(InstancePoolError, match="cold start"):
        p.finished(0.1, s.instance_id)
    p.instance_started(0.2, s.instance_id)
    with pytest.raises(InstancePoolError, match="twice"):
        p.instance_started(0.3, s.instance_id)
    p.finished(1.0, s.instance_id)
    with pytest.raises(InstancePoolError, match="idle"):
        p.finished(1.1, s.instance_id)
    with pytest.raises(InstancePoolError, match="not alive"):
        p.failed(1.2, 42)
    for bad in (0, -5, 1.5, True, None):
        with pytest.raises(InstancePoolError, match="memory_mb"):
            p.submit(2.0, "b", bad)


@pytest.mark.parametrize("kwargs", [{"max_instances": 0}, {"max_instances": 1.5}, {"keep_alive_s": float("nan")}, {"keep_alive_s": "10"}])
def test_bad_settings_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        pool(**kwargs)
