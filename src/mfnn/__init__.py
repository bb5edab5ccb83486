"""mfnn: the mean-field theory of neural networks, simulated, checked and shown.

A wide two-layer network is a cloud of particles theta_j = (a_j, w_j, b_j) whose
empirical measure moves by a Wasserstein gradient flow. docs/theory.md states the
conventions and the module that computes each formula.
"""

from . import diagnostics as diagnostics
from .cache import enable_compilation_cache as enable_compilation_cache
from .dynamics import BirthDeath as BirthDeath
from .dynamics import GradientFlow as GradientFlow
from .dynamics import Langevin as Langevin
from .dynamics import Temperature as Temperature
from .dynamics import mckean_vlasov as mckean_vlasov
from .errors import ConfigError as ConfigError
from .errors import MfnnError as MfnnError
from .integrators import Adaptive as Adaptive
from .integrators import BirthDeathSplitting as BirthDeathSplitting
from .integrators import Euler as Euler
from .integrators import EulerMaruyama as EulerMaruyama
from .integrators import Heun as Heun
from .measure import (
    Constant as Constant,
)
from .measure import (
    Gaussian as Gaussian,
)
from .measure import (
    Uniform as Uniform,
)
from .measure import (
    load_particles as load_particles,
)
from .measure import (
    sample_particles as sample_particles,
)
from .measure import (
    save_particles as save_particles,
)
from .models import TwoLayer as TwoLayer
from .objectives import (
    EmpiricalRisk as EmpiricalRisk,
)
from .objectives import (
    Exact as Exact,
)
from .objectives import (
    FullBatch as FullBatch,
)
from .objectives import (
    Minibatch as Minibatch,
)
from .objectives import (
    Online as Online,
)
from .objectives import (
    PopulationRisk as PopulationRisk,
)
from .objectives import (
    ZeroRisk as ZeroRisk,
)
from .recorder import Recorder as Recorder
from .simulate import simulate as simulate
from .simulate import simulate_batch as simulate_batch
from .targets import (
    DataSet as DataSet,
)
from .targets import (
    GaussianInputs as GaussianInputs,
)
from .targets import (
    Sign as Sign,
)
from .targets import (
    Teacher as Teacher,
)
from .targets import (
    UniformBox as UniformBox,
)
from .targets import (
    load_dataset as load_dataset,
)
from .targets import (
    sample_dataset as sample_dataset,
)
from .trajectory import State as State
from .trajectory import Trajectory as Trajectory

__version__ = "0.1.0"
