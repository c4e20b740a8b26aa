"""Hydra's composition and validation errors as one line in liver-gan's style, with a "did you mean".

Hydra reports a mistyped key, group option or value in 6-12 lines (the override, the OmegaConf
error, the search path) and exits with status 1; liver-gan's own errors are one line and status 2.
:func:`one_line` turns the errors Hydra raises while composing (see :data:`COMPOSITION_ERRORS`)
into that one line: the key or option at fault, the closest valid names, the valid names.
:func:`unwritable_run_dir` does the same for a run dir Hydra cannot create or write.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from enum import Enum

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from liver_gan.config import schema_file

COMPOSITION_ERRORS = (ConfigCompositionException, OverrideParseException, OmegaConfBaseException)
MOST_NAMES_LISTED = 12  # a longer list of valid names is cut, as the "did you mean" already picked the close ones


def one_line(error: Exception) -> str:
    """The message for a composition error: what is wrong, the closest valid names, then all of them."""
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        return _unknown_option(error.missing_cfg_file, error.options)
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        return _unknown_key(cause)
    if isinstance(cause, ValidationError) and cause.full_key:
        return _invalid_value(cause)
    if isinstance(error, OverrideParseException):
        return f"{error.override}: not an override Hydra can parse ({error.message.splitlines()[0]}); write key=value"
    message = _first_line(error)
    if isinstance(cause, OmegaConfBaseException) and cause is not error:
        message = f"{message}: {_first_line(cause)}"
    return message


def unwritable_run_dir(error: BaseException) -> str | None:
    """The message for Hydra failing to write its run dir (the dir, ``.hydra/`` or the log), or None
    when ``error`` is not a file-system error.  The logging setup wraps its handler's error in a
    ValueError ("Unable to configure handler"), so the whole cause chain is searched."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    where = cause.filename if cause.filename is not None else "the run dir"
    reason = cause.strerror or type(cause).__name__
    return (
        f"cannot write the run dir: {where}: {reason}; set hydra.run.dir= (hydra.sweep.dir= with -m) "
        "to a folder you can write, or run from one"
    )


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _unknown_option(missing_cfg_file: str, options: list[str]) -> str:
    group, _, option = missing_cfg_file.rpartition("/")
    return f"{group}={option}: no such option in the {group} group{_suggestion(option, options)}"


def _unknown_key(error: OmegaConfBaseException) -> str:
    parent, _, key = str(error.full_key).rpartition(".")
    schema = error.object_type
    fields = [field.name for field in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
    where = f"{schema.__name__} ({schema_file(schema)})" if fields else f"'{parent or 'the config'}'"
    prefix = f"{parent}." if parent else ""
    suggestion = _suggestion(key, fields, prefix) if fields else ""
    return f"{error.full_key}: no such key in {where}{suggestion}"


def _invalid_value(error: OmegaConfBaseException) -> str:
    key = str(error.full_key).rpartition(".")[2]
    choices = _enum_choices(error.object_type, key)
    if choices:
        return f"{error.full_key}={error.value}: not a valid value{_suggestion(str(error.value), choices)}"
    return f"{error.full_key}={error.value}: {str(error).splitlines()[0]}"


def _enum_choices(schema: type | None, key: str) -> list[str]:
    """The names of the Enum that types ``schema.key``, or none when it is not an Enum."""
    if schema is None or not dataclasses.is_dataclass(schema):
        return []
    kind = typing.get_type_hints(schema).get(key)
    return [member.name for member in kind] if isinstance(kind, type) and issubclass(kind, Enum) else []


def _suggestion(name: str, valid: list[str], prefix: str = "") -> str:
    """``; did you mean X?`` when something is close, then ``; valid: ...``."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    listed = ", ".join(valid[:MOST_NAMES_LISTED]) + (", ..." if len(valid) > MOST_NAMES_LISTED else "")
    guess = f"; did you mean {' or '.join(prefix + match for match in close)}?" if close else ""
    return f"{guess} (valid: {listed})"
