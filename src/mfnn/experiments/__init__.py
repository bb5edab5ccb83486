"""The registry of named experiments (``mfnn experiments`` lists them)."""

from .base import Experiment as Experiment
from .global_convergence import GLOBAL_CONVERGENCE
from .reflecting_ball import REFLECTING_BALL
from .sign import SIGN

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (SIGN, GLOBAL_CONVERGENCE, REFLECTING_BALL)
}
DEFAULT = "sign"
