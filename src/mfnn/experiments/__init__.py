"""The registry of named experiments (``mfnn experiments`` lists them)."""

from .base import Experiment as Experiment
from .sign import SIGN

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (SIGN,)}
DEFAULT = "sign"
