from .birth_death import BirthDeath as BirthDeath
from .gradient_flow import Blocks as Blocks
from .gradient_flow import GradientFlow as GradientFlow
from .langevin import Langevin as Langevin
from .langevin import Temperature as Temperature
from .langevin import mckean_vlasov as mckean_vlasov
