"""The discrete-event simulator: the policies of ``policies`` on a SimPy clock."""

from sim.config import build_simulation, simulate
from sim.simulation import Simulation

__all__ = ["simulate", "build_simulation", "Simulation"]
