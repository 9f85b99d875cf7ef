"""The ``ssmzoo`` command's entry point, outside the package so that it runs before ``import ssmzoo``.

Importing ssmzoo imports torch and timm (seconds); Ctrl-C meanwhile is exit code 130 and no traceback,
as Ctrl-C during a command is. The library's import itself is left as it is: it registers the models
with timm and installs no signal handlers."""

import sys


def main() -> None:
    try:
        from ssmzoo.cli import run
    except KeyboardInterrupt:
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
