from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import get_activation as get_activation
from .base import AbstractModel as AbstractModel
from .base import AbstractUnitModel as AbstractUnitModel
from .base import features_pullback as features_pullback
from .scaling import Scaling as Scaling
from .scaling import gamma_of as gamma_of
from .two_layer import TwoLayer as TwoLayer
