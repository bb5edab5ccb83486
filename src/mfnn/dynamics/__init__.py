from .gradient_flow import Blocks as Blocks
from .gradient_flow import GradientFlow as GradientFlow
