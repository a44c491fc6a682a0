"""Native kernels callable on numpy arrays.

Every function runs on the active ISA (see ``pylm.use_isa``) and takes ``threads=`` where the
kernel is multi-threaded (0 = the global default).
"""

from .quant import *  # noqa: F401,F403
from .qmatmul import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
