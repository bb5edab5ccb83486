from .explicit import INTEGRATORS as INTEGRATORS
from .explicit import Euler as Euler
from .explicit import Heun as Heun
