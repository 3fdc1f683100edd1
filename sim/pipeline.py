"""A simulated run with EdgeServe's pipelines: joins, cascades, lazy routing and stale drops.

Each gateway's driver is a ``sim.pipeline_gateway.PipelineGatewayDriver``:
its ``spec.pipeline_stage.PipelineStage`` sits in front of the same
scheduler, fed from SimPy events. Every input has its row in the request
table (``spec.pipeline_recorder``), with the pipeline's columns
(``join_wait_s``, ``escalated``, ``payload_bytes``) and the summary's
``link_bytes``, from the run's ``spec.pipeline_ledger.PipelineLedger``.
"""

from __future__ import annotations

from policies.run_spec import RunSpec
from sim.pipeline_gateway import PipelineGatewayDriver
from sim.simulation import Simulation
from spec.pipeline import PipelineSpec
from spec.pipeline_ledger import PipelineLedger
from spec.pipeline_recorder import PipelineRecorder
from spec.run_result import RunResult
from spec.validation import ConfigError

__all__ = ["PipelineSimulation"]


class PipelineSimulation(Simulation):
    """``Simulation`` whose gateways run the run config's ``pipeline`` stages before their schedulers."""

    driver_class = PipelineGatewayDriver
    #: the bulk path (sim.bulk_driver) hands requests to the schedulers past the drivers: a stage must see each input
    bulk = False

    def __init__(self, spec: RunSpec):
        self.pipeline_spec = PipelineSpec.from_config(spec.config.get("pipeline"), seed=spec.seed)
        cascade = self.pipeline_spec.models()[1]
        if cascade is not None and cascade.needs_confidence and cascade.confidence_samples is None:
            # live, the model's own logits say; the simulator has no model and needs them measured
            raise ConfigError("pipeline.cascade.confidence_samples", None, "the cheap model's measured confidences (a threshold "
                              "cascade in the simulator; experiments.edgeserve measures them), or escalate_share instead")
        self.ledger = PipelineLedger(len(spec.arrivals))
        self.members: dict[int, tuple[int, ...]] = {}
        #: the bytes the batch being dispatched moves over its link (the stage's; None: its payloads)
        self.transfer_bytes: int | None = None
        super().__init__(spec)
        kinds = [self.cluster.executors[n].kind for n in self.executor_names]
        self.recorder = PipelineRecorder(self.arrivals, self.executor_names, kinds, self._expand)
        self.ended_inputs = 0

    def _expand(self, task_ids) -> list[int]:
        members = self.members
        return [m for t in task_ids for m in members.get(t, (t,))]

    def payload_bytes(self, request_ids) -> int:
        if self.transfer_bytes is not None:
            return self.transfer_bytes
        return super().payload_bytes(self._expand(request_ids))

    def requests_ended(self, count: int) -> None:
        # the base drivers count tasks; a pipeline counts inputs (inputs_ended), so only the check is kept
        super().requests_ended(0)

    def inputs_ended(self, count: int) -> None:
        """``count`` inputs ended (completed or dropped)."""
        self.ended += count
        super().requests_ended(0)

    def _arrivals_finished(self) -> None:
        for driver in self.gateways.values():
            driver.close_stage()
        super()._arrivals_finished()

    def run(self) -> RunResult:
        result = super().run()
        result.requests = self.ledger.add_columns(result.requests)
        result.summary.update(self.ledger.summary(result.requests))
        return result
