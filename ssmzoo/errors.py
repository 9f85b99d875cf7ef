"""User-facing errors: each one is printed by the CLI as a single line, without a traceback.

Two kinds, told apart by the exit code: a :class:`UsageError` says the command line itself is wrong
(exit code 2, as for click's own checks), any other :class:`SsmzooError` that the run failed (exit
code 1). The line between them: what the command line says, and whether the paths it names exist and
are of the right kind, is usage; what is inside those files and folders, whether the system lets
them be read or written (permissions, a read-only or full disk), or what happens while running
(network, decoding, a damaged checkpoint), is a run-time failure.
"""


class SsmzooError(Exception):
    """A problem the user can fix (bad input, missing weights, malformed manifest)."""

    exit_code = 1


class UsageError(SsmzooError):
    """An option value or argument that cannot be used as typed: bad syntax, an unknown name, a path
    that does not exist or is of the wrong kind, options that contradict each other, a device this
    machine lacks. The CLI points to the command's ``--help``."""

    exit_code = 2


class ManifestError(SsmzooError):
    """The manifest is malformed; the message names the model and the field."""


class ManifestOptionError(ManifestError, UsageError):
    """The command line names a model or manifest file that does not exist."""


class ManifestFileError(ManifestOptionError):
    """``--manifest`` (an option of ``ssmzoo`` itself, not of the command) or ``SSMZOO_MANIFEST`` names a
    path where there is no file (nothing, a broken link, a folder). A file that is there but cannot be
    read or is malformed is a :class:`ManifestError` (exit code 1)."""


class LabelsFileError(SsmzooError):
    """A labels file (a model's class names) cannot be read or is malformed; the message names the file
    and the cause. Named inside a manifest entry, so what it holds is a run-time failure, as the
    manifest's own content is."""


class WeightsError(SsmzooError):
    """Weights cannot be found, fetched, verified or loaded."""


class WeightsOptionError(WeightsError, UsageError):
    """``--weights`` (or a checkpoint argument) cannot be used as typed, or is needed and missing."""


class OutputError(SsmzooError):
    """An output file the command line names cannot be written there (no permission, a read-only or full
    disk): the path is usable as typed, the file system refuses it, so the run fails (exit code 1)."""


class InputError(SsmzooError):
    """One input file (image or video) cannot be used; the message names the file and the cause."""


class ScanBackendError(SsmzooError, ValueError):
    """``SSMZOO_SCAN`` names a scan backend that does not exist or cannot run on this machine or device."""
