from .risk import EmpiricalRisk as EmpiricalRisk
from .sampling import FullBatch as FullBatch
from .sampling import Minibatch as Minibatch
from .sampling import Online as Online
