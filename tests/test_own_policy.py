"""A user's own policy, in a module outside the package, plugs in through a config ``_target_``."""

from __future__ import annotations

import sys
import textwrap

from sim import simulate
from tests.sim.configs import single_queue

USER_MODULE = textwrap.dedent(
    '''
    from policies import BatchingPolicy, Decision, NOTHING

    class EveryThird(BatchingPolicy):
        """Dispatch in threes; a lone straggler goes after max_wait_s."""

        def __init__(self, *, max_wait_s: float = 0.01):
            super().__init__()
            self.max_wait_s = max_wait_s

        def decide(self, now_s):
            if len(self.queue) >= 3:
                return Decision(batches=(3,) * (len(self.queue) // 3),
                                wake_at_s=None if len(self.queue) % 3 == 0 else now_s + self.max_wait_s)
            if not self.queue:
                return NOTHING
            due_s = self.queue[0].arrival_s + self.max_wait_s
            return Decision(batches=(len(self.queue),)) if now_s >= due_s else Decision(wake_at_s=due_s)
    '''
)


def test_policy_from_outside_the_package_runs_in_the_simulator(tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = single_queue(rate_rps=500, service_s=0.0005, num_requests=3000,
                          batching={"_target_": "my_policies.EveryThird", "max_wait_s": 0.02})  # fmt: skip
    result = simulate(config)
    sizes = result.batches["size"]
    assert sizes.max() == 3
    assert (sizes == 3).mean() > 0.9
    assert result.summary["completed"] == 3000
    sys.modules.pop("my_policies", None)
