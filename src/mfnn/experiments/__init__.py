"""The registry of named experiments (``mfnn experiments`` lists them)."""

from .base import Experiment as Experiment
from .reflecting_ball import REFLECTING_BALL
from .sign import SIGN

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (SIGN, REFLECTING_BALL)}
DEFAULT = "sign"
