"""The training stage's one user-facing error."""


class TrainError(RuntimeError):
    """A problem the user can fix (missing recipe, data, checkpoint); the message says what."""
