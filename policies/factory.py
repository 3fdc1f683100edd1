"""Building schedulers from the ``policy`` section of a run config (shared by sim and live)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policies.scheduler import Scheduler
from spec.build import instantiate
from spec.topology import Cluster
from spec.validation import ConfigError, check_int_at_least

__all__ = ["make_scheduler_factory", "POLICY_KEYS"]

POLICY_KEYS = ("placement", "batching", "planner", "batching_per_executor", "max_retries")


def make_scheduler_factory(policy: Mapping) -> Callable[[str, Cluster], Scheduler]:
    """A function ``factory(gateway, cluster) -> Scheduler`` building fresh policy objects.

    Every policy is built once here so that a bad setting fails before a run.
    """
    if not isinstance(policy, Mapping):
        raise ConfigError("policy", type(policy).__name__, "a mapping with placement, batching and planner")
    unknown = set(policy) - set(POLICY_KEYS)
    if unknown:
        raise ConfigError(f"policy.{sorted(unknown)[0]}", None, "one of " + ", ".join(POLICY_KEYS))
    for key in ("placement", "batching"):
        if not isinstance(policy.get(key), Mapping) or "_target_" not in policy[key]:
            raise ConfigError(f"policy.{key}", policy.get(key), "a mapping with a _target_ class")
    instantiate("policy.placement", policy["placement"])
    instantiate("policy.batching", policy["batching"])
    if policy.get("planner") is not None:
        instantiate("policy.planner", policy["planner"])
    per_executor = dict(policy.get("batching_per_executor") or {})
    # a failed batch is dispatched again up to this many times (Scheduler), then dropped as retries_exhausted
    max_retries = check_int_at_least("policy.max_retries", 0 if policy.get("max_retries") is None else policy["max_retries"], 0)

    def factory(gateway: str, cluster: Cluster) -> Scheduler:
        for name in per_executor:
            if name not in cluster.executors:
                # an override for an executor that does not exist would silently do nothing
                raise ConfigError(f"policy.batching_per_executor.{name}", name, "an executor of the cluster: " + ", ".join(cluster.executors))
        batching = instantiate("policy.batching", policy["batching"])
        if per_executor:
            batching = {
                name: instantiate(f"policy.batching_per_executor.{name}", per_executor[name]) if name in per_executor else batching
                for name in cluster.reachable(gateway)
            }
        planner = policy.get("planner")
        return Scheduler(
            cluster=cluster,
            placement=instantiate("policy.placement", policy["placement"]),
            batching=batching,
            planner=None if planner is None else instantiate("policy.planner", planner),
            gateway=gateway,
            max_retries=max_retries,
        )

    return factory
