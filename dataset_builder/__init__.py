"""lgt: Long Grounded Thoughts as a Hugging Face dataset.

Data flow: sources (annotations -> ``Scene``) -> stages (one per config: MCQs, traces, training rows; their logic
in ``synthesis``, their models through ``generation``) -> builder (``datasets`` plumbing) -> build (parquet, card)
-> Hub.
"""

__version__ = "0.1.0"

from .errors import InputError
from .scene import Scene, SceneObject

__all__ = ["InputError", "Scene", "SceneObject", "__version__"]
