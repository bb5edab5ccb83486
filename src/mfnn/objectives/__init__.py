from .population import PopulationRisk as PopulationRisk
from .risk import EmpiricalRisk as EmpiricalRisk
from .sampling import Exact as Exact
from .sampling import FullBatch as FullBatch
from .sampling import Minibatch as Minibatch
from .sampling import Online as Online
from .zero import ZeroRisk as ZeroRisk
