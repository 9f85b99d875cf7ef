"""User-facing errors: each one is printed by the CLI as a single line, without a traceback."""


class SsmzooError(Exception):
    """A problem the user can fix (bad input, missing weights, malformed manifest)."""


class ManifestError(SsmzooError):
    """The manifest is malformed; the message names the model and the field."""


class WeightsError(SsmzooError):
    """Weights cannot be found, fetched, verified or loaded."""


class InputError(SsmzooError):
    """One input file (image or video) cannot be used; the message names the file and the cause."""
