"""The host's processor sharing against arithmetic and queueing theory (not against its own output)."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from spec.host_cpu import HostCpu, HostCpuError, JobFinished, WakeAt
from spec.validation import ConfigError


class Loop:
    """A minimal event loop driving the model: submissions at given times, wakes at WakeAt."""

    def __init__(self, cores: float):
        self.model = HostCpu(cores=cores)
        self.finished: dict = {}
        self._heap: list = []
        self._order = 0

    def at(self, time_s: float, job, cpu_s: float, cores: float = 1.0) -> None:
        self._push(time_s, ("submit", job, cpu_s, cores))

    def _push(self, time_s, item) -> None:
        self._order += 1
        heapq.heappush(self._heap, (time_s, self._order, item))

    def run(self) -> dict:
        while self._heap:
            now_s, _, item = heapq.heappop(self._heap)
            if item[0] == "submit":
                actions = self.model.submit(now_s, job=item[1], cpu_s=item[2], cores=item[3])
            else:
                actions = self.model.wake(now_s, generation=item[1])
            for action in actions:
                if isinstance(action, JobFinished):
                    self.finished[action.job] = action.at_s
                elif isinstance(action, WakeAt):
                    self._push(action.at_s, ("wake", action.generation))
        return self.finished


def test_two_one_second_jobs_on_one_core_both_finish_at_two_seconds():
    loop = Loop(cores=1)
    loop.at(0.0, "a", 1.0)
    loop.at(0.0, "b", 1.0)
    assert loop.run() == {"a": pytest.approx(2.0, abs=1e-12), "b": pytest.approx(2.0, abs=1e-12)}


@pytest.mark.parametrize("cores,jobs", [(1, 1), (2, 2), (4, 3), (8, 8)])
def test_no_more_jobs_than_cores_run_at_full_speed(cores, jobs):
    loop = Loop(cores=cores)
    for j in range(jobs):
        loop.at(0.1 * j, j, 0.5 + j)
    finished = loop.run()
    assert finished == {j: pytest.approx(0.1 * j + 0.5 + j, abs=1e-12) for j in range(jobs)}


def test_a_later_job_slows_the_running_one_from_its_arrival_on():
    # a: 1 CPU-s from 0; b: 1 CPU-s from 0.5; one core: a has 0.5 left at 0.5, both at 1/2 speed
    # -> a ends at 1.5; b has 0.5 left then, alone: ends at 2.0
    loop = Loop(cores=1)
    loop.at(0.0, "a", 1.0)
    loop.at(0.5, "b", 1.0)
    assert loop.run() == {"a": pytest.approx(1.5), "b": pytest.approx(2.0)}


def test_demands_are_shared_max_min_fairly():
    # 2 cores: a wants 0.5 core, b and c 2 cores each: a gets 0.5, b and c 0.75 each
    model = HostCpu(cores=2)
    model.submit(0.0, job="a", cpu_s=10.0, cores=0.5)
    model.submit(0.0, job="b", cpu_s=10.0, cores=2.0)
    model.submit(0.0, job="c", cpu_s=10.0, cores=2.0)
    assert (model.rate("a"), model.rate("b"), model.rate("c")) == (0.5, 0.75, 0.75)
    # a multi-threaded job alone takes cpu_s / cores
    loop = Loop(cores=4)
    loop.at(0.0, "t", 3.0, cores=2.0)
    assert loop.run() == {"t": pytest.approx(1.5)}


@pytest.mark.parametrize("u", [0.2, 0.5, 0.8])
def test_a_background_load_of_u_cores_slows_a_lone_job_by_one_over_one_minus_u(u):
    # a background process that keeps u of the core busy (it demands u cores) beside a 1-CPU-s job
    loop = Loop(cores=1)
    loop.at(0.0, "background", 1e9, cores=u)
    loop.at(0.0, "job", 1.0)
    model_finish = None
    while loop._heap and "job" not in loop.finished:
        now_s, _, item = heapq.heappop(loop._heap)
        actions = (loop.model.submit(now_s, job=item[1], cpu_s=item[2], cores=item[3]) if item[0] == "submit"
                   else loop.model.wake(now_s, generation=item[1]))  # fmt: skip
        for action in actions:
            if isinstance(action, JobFinished):
                loop.finished[action.job] = model_finish = action.at_s
            elif isinstance(action, WakeAt):
                loop._push(action.at_s, ("wake", action.generation))
    expected = 1.0 / (1.0 - u) if u <= 0.5 else 2.0  # above half a core, fair sharing caps it at 1/2 each
    assert model_finish == pytest.approx(expected)


def test_a_backlog_of_short_messages_at_utilization_u_slows_a_long_job_by_one_over_one_minus_u():
    # work conservation: a role whose messages keep u of a core busy on average takes u, the long job 1 - u
    rng = np.random.default_rng(3)
    u, cpu_s_per_message = 0.3, 1e-3
    rate = u / cpu_s_per_message
    loop = Loop(cores=1)
    loop.at(0.0, "long", 50.0)
    t = 0.0
    while t < 200.0:
        t += rng.exponential(1.0 / rate)
        loop.at(t, "role", cpu_s_per_message)  # the same job: its backlog grows
    finished = loop.run()
    assert finished["long"] == pytest.approx(50.0 / (1.0 - u), rel=0.02)


def test_mm1_under_processor_sharing_has_mean_sojourn_one_over_mu_minus_lambda():
    rng = np.random.default_rng(11)
    lam, mu, n = 0.7, 1.0, 60_000
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n))
    work = rng.exponential(1.0 / mu, n)
    loop = Loop(cores=1)
    for i, (t, w) in enumerate(zip(arrivals, work)):
        loop.at(float(t), i, float(w))
    finished = loop.run()
    sojourn = np.array([finished[i] - arrivals[i] for i in range(n)])
    # batch means for a confidence band (sojourns are correlated)
    means = sojourn[5000:].reshape(50, -1).mean(axis=1)
    half = 2.01 * means.std(ddof=1) / math.sqrt(len(means))
    assert abs(means.mean() - 1.0 / (mu - lam)) < max(half, 0.05 * 1.0 / (mu - lam))
    # and PS is not FIFO: a short job that arrives behind a long one leaves first
    loop = Loop(cores=1)
    loop.at(0.0, "long", 10.0)
    loop.at(1.0, "short", 0.1)
    done = loop.run()
    assert done["short"] < done["long"]


def test_misuse_names_the_side_that_misused_it():
    with pytest.raises(ConfigError, match="host.cores"):
        HostCpu(cores=0)
    model = HostCpu(cores=1)
    model.submit(1.0, job="a", cpu_s=1.0)
    with pytest.raises(HostCpuError, match="driver went back in time"):
        model.submit(0.5, job="b", cpu_s=1.0)
    with pytest.raises(HostCpuError, match="driver changed the demand"):
        model.submit(1.0, job="a", cpu_s=1.0, cores=2.0)
    with pytest.raises(HostCpuError, match="cpu_s"):
        model.submit(1.0, job="c", cpu_s=-1.0)
    # a stale wake does nothing
    assert model.wake(1.5, generation=-1) == []


def test_cpu_seconds_are_conserved():
    loop = Loop(cores=2)
    rng = np.random.default_rng(5)
    total = 0.0
    for i in range(500):
        w = float(rng.exponential(0.2))
        total += w
        loop.at(float(i * 0.05), i, w, cores=float(rng.choice([0.5, 1.0, 2.0])))
    loop.run()
    assert loop.model.busy_cpu_s == pytest.approx(total, rel=1e-9)
    assert loop.model.active == 0
