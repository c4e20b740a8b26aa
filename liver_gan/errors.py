"""The one exception type whose message is shown to the user as a single line."""

import unicodedata


class LiverGanError(Exception):
    """Bad input or an unmet precondition the user can fix.

    The message names the file or option at fault and says what to do; the console scripts
    print it as one line and exit with status 2, without a traceback.  Control characters in it
    (newlines, terminal escape sequences from a checkpoint's or a file's strings) are shown
    escaped, so the message stays one line and cannot drive the terminal.
    """

    def __str__(self) -> str:
        return printable(super().__str__())


def printable(text: str) -> str:
    """``text`` with every control character written as its Python escape (``\\x1b``, ``\\n``)."""
    return "".join(
        character.encode("unicode_escape").decode("ascii") if unicodedata.category(character) == "Cc" else character
        for character in text
    )
