"""The one exception type a user ever sees (as ``viclab: error: ...``)."""


class ViclabError(Exception):
    """A user mistake or an unmet precondition, explained in one line that names the problem and the fix.

    The CLI prints ``viclab: error: <message>`` and exits with code 2; library callers can catch it like any error.
    """


class ViclabWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints ``viclab: warning: ...``)."""
