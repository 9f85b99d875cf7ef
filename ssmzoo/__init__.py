"""ssmzoo: a model zoo and command-line tool for vision state-space models.

Importing the package registers its architectures with timm, so ``timm.create_model("groupmamba_tiny")``
works after ``import ssmzoo``.
"""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (registers architectures with timm)
