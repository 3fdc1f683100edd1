"""Pure descriptions shared by the simulator and the live harness.

Workloads, topologies, latency profiles, noise models, pricing and the record
schema. Nothing here does I/O beyond reading a trace file named in a config,
and nothing here knows about SimPy, Pulsar, torch or Hydra.
"""
