"""Array aliases with named axes, used in signatures across mfnn.

Axes: ``m`` particles (width), ``D`` particle dimension, ``n`` samples, ``d`` input
dimension, ``k`` query points.
"""

from jaxtyping import Array, Float, Int, PRNGKeyArray

Particles = Float[Array, "m D"]
Inputs = Float[Array, "n d"]
Targets = Float[Array, " n"]
Scalar = Float[Array, ""]
Key = PRNGKeyArray

__all__ = ["Array", "Float", "Int", "Particles", "Inputs", "Targets", "Scalar", "Key"]
