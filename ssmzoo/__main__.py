# `python -m ssmzoo`: the package (torch, timm) is imported before this runs, so Ctrl-C during that import
# cannot be caught here; the installed `ssmzoo` command (ssmzoo_cli.py) catches it.
import sys

try:
    from .cli import run
except KeyboardInterrupt:
    sys.exit(130)

run()
