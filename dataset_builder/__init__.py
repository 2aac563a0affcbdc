"""lgt: Long Grounded Thoughts as a Hugging Face dataset.

Data flow: sources (annotations -> ``Scene``) -> synthesis (stage-1 MCQs) -> builder (parquet + card) -> Hub.
"""

__version__ = "0.1.0"

from .errors import InputError
from .scene import Scene, SceneObject

__all__ = ["InputError", "Scene", "SceneObject", "__version__"]
