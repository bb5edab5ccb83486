"""mfnn: the mean-field theory of neural networks, simulated, checked and shown.

A wide two-layer network is a cloud of particles theta_j = (a_j, w_j, b_j) whose
empirical measure moves by a Wasserstein gradient flow. docs/theory.md states the
conventions and the module that computes each formula.

The names below load on first use (PEP 562 module ``__getattr__``): ``import mfnn`` costs
no JAX start-up, so that commands which need no arrays (``mfnn experiments``, ``mfnn
--help``) start at once; ``mfnn.simulate`` (or ``from mfnn import simulate``) imports JAX
and the modules it needs.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "diagnostics": "",
    "enable_compilation_cache": "cache",
    "BirthDeath": "dynamics",
    "GradientFlow": "dynamics",
    "Langevin": "dynamics",
    "Temperature": "dynamics",
    "mckean_vlasov": "dynamics",
    "ConfigError": "errors",
    "MfnnError": "errors",
    "Adaptive": "integrators",
    "BirthDeathSplitting": "integrators",
    "Euler": "integrators",
    "EulerMaruyama": "integrators",
    "Heun": "integrators",
    "Constant": "measure",
    "Gaussian": "measure",
    "Uniform": "measure",
    "load_particles": "measure",
    "sample_particles": "measure",
    "save_particles": "measure",
    "TwoLayer": "models",
    "EmpiricalRisk": "objectives",
    "Exact": "objectives",
    "FullBatch": "objectives",
    "Minibatch": "objectives",
    "Online": "objectives",
    "PopulationRisk": "objectives",
    "ZeroRisk": "objectives",
    "Recorder": "recorder",
    "simulate": "simulate",
    "simulate_batch": "simulate",
    "DataSet": "targets",
    "GaussianInputs": "targets",
    "Sign": "targets",
    "Teacher": "targets",
    "UniformBox": "targets",
    "load_dataset": "targets",
    "sample_dataset": "targets",
    "State": "trajectory",
    "Trajectory": "trajectory",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access (then cache it)."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'mfnn' has no attribute {name!r}")
    module = importlib.import_module(f".{where or name}", __name__)
    value = module if where == "" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``mfnn.simulate`` must not
    replace the function ``mfnn.simulate`` (the import system sets a loaded submodule as
    an attribute of its parent; the function, loaded by `__getattr__`, keeps the name)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name, "") != "":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what static checkers see; at run time `__getattr__` loads these
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
    from .measure import Constant as Constant
    from .measure import Gaussian as Gaussian
    from .measure import Uniform as Uniform
    from .measure import load_particles as load_particles
    from .measure import sample_particles as sample_particles
    from .measure import save_particles as save_particles
    from .models import TwoLayer as TwoLayer
    from .objectives import EmpiricalRisk as EmpiricalRisk
    from .objectives import Exact as Exact
    from .objectives import FullBatch as FullBatch
    from .objectives import Minibatch as Minibatch
    from .objectives import Online as Online
    from .objectives import PopulationRisk as PopulationRisk
    from .objectives import ZeroRisk as ZeroRisk
    from .recorder import Recorder as Recorder
    from .simulate import simulate as simulate
    from .simulate import simulate_batch as simulate_batch
    from .targets import DataSet as DataSet
    from .targets import GaussianInputs as GaussianInputs
    from .targets import Sign as Sign
    from .targets import Teacher as Teacher
    from .targets import UniformBox as UniformBox
    from .targets import load_dataset as load_dataset
    from .targets import sample_dataset as sample_dataset
    from .trajectory import State as State
    from .trajectory import Trajectory as Trajectory
