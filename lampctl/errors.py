"""Typed errors. The CLI turns each into one ``Error: ...`` line and exit code 1."""

from __future__ import annotations

from collections.abc import Mapping


class LampctlError(Exception):
    """Base class for every error lampctl reports to the user."""


class ConfigError(LampctlError):
    """A registry or user config file is invalid."""


class InputError(LampctlError):
    """A data file (questions, outputs, rankings, id files) is missing or malformed."""


class ModelLoadError(LampctlError):
    """An encoder checkpoint could not be loaded."""


class DownloadError(LampctlError):
    """A download failed or a downloaded file did not verify."""


class AvocadoError(LampctlError):
    """The Avocado corpus is missing, corrupt or lacks emails that LaMP-6 needs."""


class ShardError(LampctlError):
    """Shard files are missing or were made with different parameters."""


class OutputError(LampctlError):
    """An output cannot be written, or would replace one of the command's own inputs."""


class OptionError(LampctlError):
    """An argument is missing, conflicts with another or is out of range. ``option`` names it
    (the CLI shows it as a usage error of ``--option``, exit code 2). The message names
    arguments as the Python API spells them; ``mentions`` lists those, written last in a
    parenthesis of the message, that the CLI shows as its options instead (``(eval_output)``
    -> ``(--eval-output)``, ``(record of output)`` -> ``(record of --output)``)."""

    def __init__(self, option: str, message: str, mentions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.option = option
        self.mentions = mentions

    def as_flags(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with each mentioned argument written as the CLI's option (``flags``:
        argument -> option, where the option is not the argument's name with dashes):
        ``no_ranking=True`` -> ``--no-ranking``, ``ranking=PATH`` -> ``--ranking PATH``,
        ``(eval_output)`` -> ``(--eval-output)``."""
        import re

        text = str(self)
        for name in self.mentions:
            flag = (flags or {}).get(name) or "--" + name.replace("_", "-")
            text = re.sub(rf"(?<![\w-]){re.escape(name)}=True\b", flag, text)
            text = re.sub(rf"(?<![\w-]){re.escape(name)}=(?=\S)", f"{flag} ", text)
            text = re.sub(rf"(?<=[( ]){re.escape(name)}(?=\))", flag, text)
        return text
