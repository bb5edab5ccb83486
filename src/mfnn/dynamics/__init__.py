from .gradient_flow import GradientFlow as GradientFlow
