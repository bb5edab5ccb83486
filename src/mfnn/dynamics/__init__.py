from .gradient_flow import Columns as Columns
from .gradient_flow import GradientFlow as GradientFlow
