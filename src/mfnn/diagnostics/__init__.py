from .transport import (
    wasserstein2 as wasserstein2,
)
from .two_layer import (
    breakpoint_concentration as breakpoint_concentration,
)
from .two_layer import (
    breakpoints as breakpoints,
)
from .two_layer import (
    relative_movement as relative_movement,
)
