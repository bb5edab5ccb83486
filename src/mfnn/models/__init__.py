from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import get_activation as get_activation
from .two_layer import SCALINGS as SCALINGS
from .two_layer import TwoLayer as TwoLayer
from .two_layer import scaling_gamma as scaling_gamma
