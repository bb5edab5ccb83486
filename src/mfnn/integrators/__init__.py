from .adaptive import Adaptive as Adaptive
from .adaptive import adaptive_solve as adaptive_solve
from .base import AbstractIntegrator as AbstractIntegrator
from .explicit import Euler as Euler
from .explicit import Heun as Heun
from .stochastic import BirthDeathSplitting as BirthDeathSplitting
from .stochastic import EulerMaruyama as EulerMaruyama

INTEGRATORS = {
    "euler": Euler,
    "heun": Heun,
    "euler_maruyama": EulerMaruyama,
    "adaptive": Adaptive,
}
