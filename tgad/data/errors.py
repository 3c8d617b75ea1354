"""The one error type for bad dataset input: its message is a single line naming the path and the fix."""


class DataError(ValueError):
    """A dataset folder, file or setting is unusable; ``str(err)`` says which and how to fix it."""
