"""The ``ssmzoo`` command's entry point, outside the package so that it runs before ``import ssmzoo``.

Started here, the package leaves torch and timm (seconds to import) to the commands that need them, so
``ssmzoo --help`` and a mistyped option answer at once (see ``starting``). Ctrl-C while the command
starts is exit code 130 and no traceback, as Ctrl-C during a command is. The library's import itself is
left as it is: it registers the models with timm and installs no signal handlers."""

import sys

# True while main() imports the package: ssmzoo/__init__.py then skips registering the models with timm
# (importing torch and timm), which the commands do where they build a model (ssmzoo.factory); reading the
# manifest needs neither for ssmzoo's own architectures (ssmzoo.architectures).
# An attribute of this module, not an environment variable: DataLoader workers and other child processes
# import ssmzoo as the library does. False again once the package is imported, so a later `import ssmzoo`
# in this process, after `del sys.modules["ssmzoo"]`, registers them as usual.
starting = False


def main() -> None:
    global starting
    starting = True
    try:
        from ssmzoo.cli import run
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        starting = False
    run()


if __name__ == "__main__":
    main()
