"""The one error of the dev stack."""


class StackError(RuntimeError):
    """Start-up cannot go on; the message says what to do."""
