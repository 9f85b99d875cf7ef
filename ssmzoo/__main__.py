# `python -m ssmzoo`: the package is imported before this runs, without torch and timm (ssmzoo/__init__.py
# tells this start from runpy's), so Ctrl-C during that short import cannot be caught here; the installed
# `ssmzoo` command (ssmzoo_cli.py) catches it. The commands import torch and timm where they need them.
import sys

try:
    from .cli import run
except KeyboardInterrupt:
    sys.exit(130)

run()
