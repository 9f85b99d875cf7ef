"""ssmzoo: a model zoo and command-line tool for vision state-space models.

Importing the package registers its architectures with timm, so ``timm.create_model("groupmamba_tiny")``
works after ``import ssmzoo``. The ``ssmzoo`` command (and ``python -m ssmzoo``) imports it without them,
so that its help answers at once; its commands register them where they build a model (the manifest
knows ssmzoo's architectures without timm: ``ssmzoo.architectures``). See ``_started_as_command``.
"""

import sys
from importlib import import_module
from typing import List, Optional

__version__ = "0.1.0"


def _module_run(argv: List[str]) -> Optional[str]:
    """The module ``python [OPTIONS] -m MODULE ...`` runs, read from the interpreter's own command line
    (``sys.orig_argv``): ``-m`` ends the interpreter's options, as do ``-c``, ``-`` and a script's name
    (None then). Short options may be bundled (``-Im ssmzoo``); ``-X``, ``-W`` take a value."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "--check-hash-based-pycs":
            next(args, None)
            continue
        if not arg.startswith("-") or arg == "-" or arg.startswith("--"):
            return None
        for k, flag in enumerate(arg[1:], 2):
            if flag in "mXW":
                value = arg[k:] or next(args, None)
                if flag == "m":
                    return value
                break
            if flag == "c":
                return None
    return None


def _started_as_command() -> bool:
    """Whether this import starts the ``ssmzoo`` command rather than a library user's program: the
    console script says so (``ssmzoo_cli.starting``), and ``python -m ssmzoo`` is told by runpy, which
    imports the package before running ``__main__`` while ``sys.argv[0]`` is ``"-m"`` (Python's
    documented behaviour), with ``sys.orig_argv`` naming this package. Anything else registers the models."""
    if getattr(sys.modules.get("ssmzoo_cli"), "starting", False) is True:
        return True
    argv = getattr(sys, "argv", None) or [""]
    return argv[0] == "-m" and _module_run(list(getattr(sys, "orig_argv", []))) in (__name__, f"{__name__}.__main__")


if not _started_as_command():
    import_module(f"{__name__}.models")  # registers the architectures with timm (and binds ssmzoo.models)
