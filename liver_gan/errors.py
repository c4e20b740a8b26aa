"""The one exception type whose message is shown to the user as a single line."""


class LiverGanError(Exception):
    """Bad input or an unmet precondition the user can fix.

    The message names the file or option at fault and says what to do; the console scripts
    print it as one line and exit with status 2, without a traceback.
    """
