"""The registry of named experiments (``mfnn experiments`` lists them)."""

from ..study import Experiment as Experiment
from .barron_rate import BARRON_RATE
from .birth_death_speedup import BIRTH_DEATH_SPEEDUP
from .boltzmann_fixed_point import BOLTZMANN_FIXED_POINT
from .chaos import CHAOS
from .entropic_regime import ENTROPIC_REGIME
from .global_convergence import GLOBAL_CONVERGENCE
from .kernel_limit import KERNEL_LIMIT
from .langevin_gibbs import LANGEVIN_GIBBS
from .langevin_temperature import LANGEVIN_TEMPERATURE
from .lazy_vs_rich import LAZY_VS_RICH
from .mf_vs_kernel import MF_VS_KERNEL
from .multilayer_chaos import MULTILAYER_CHAOS
from .mv_control import MV_CONTROL
from .online_sgd_ode import ONLINE_SGD_ODE
from .pde_vs_particles import PDE_VS_PARTICLES
from .random_features import RANDOM_FEATURES
from .reflecting_ball import REFLECTING_BALL
from .resnet_depth_limit import RESNET_DEPTH_LIMIT
from .resnet_ensemble import RESNET_ENSEMBLE
from .resnet_expansion import RESNET_EXPANSION
from .sign import SIGN
from .stationary_1d import STATIONARY_1D
from .teacher_speed import TEACHER_SPEED

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        SIGN,
        GLOBAL_CONVERGENCE,
        REFLECTING_BALL,
        TEACHER_SPEED,
        STATIONARY_1D,
        BIRTH_DEATH_SPEEDUP,
        LANGEVIN_GIBBS,
        LANGEVIN_TEMPERATURE,
        ENTROPIC_REGIME,
        RANDOM_FEATURES,
        BARRON_RATE,
        LAZY_VS_RICH,
        CHAOS,
        RESNET_ENSEMBLE,
        MULTILAYER_CHAOS,
        RESNET_DEPTH_LIMIT,
        RESNET_EXPANSION,
        BOLTZMANN_FIXED_POINT,
        PDE_VS_PARTICLES,
        MV_CONTROL,
        KERNEL_LIMIT,
        MF_VS_KERNEL,
        ONLINE_SGD_ODE,
    )
}
DEFAULT = "sign"
