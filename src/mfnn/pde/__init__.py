"""The Eulerian view: the mean-field PDE, its Boltzmann fixed point and its control, on a grid."""

from .energy import AbstractGridEnergy as AbstractGridEnergy
from .energy import KernelEnergy as KernelEnergy
from .energy import SampledEnergy as SampledEnergy
from .energy import grid_energy as grid_energy
from .grid import Grid as Grid
from .solver import FokkerPlanck as FokkerPlanck
