"""Masking secrets out of log records before anything writes them.

Two nets, both applied to the formatted message, the exception text and extra fields:

- **patterns**: a value after a secret-sounding key (`password=…`, `"passphrase": "…"`,
  `set wlan guest passphrase …`) becomes `********`;
- **known secrets**: every plaintext the `SecretBox` encrypts or decrypts is registered here,
  and is masked wherever it shows up, whatever surrounds it.

`install_redaction(redactor)` wraps the log-record factory, so a record is clean from the
moment it exists (every logger, every handler, pytest's caplog included); `RedactingFilter`
does the same on a handler, for records built elsewhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

MASK = "********"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words

_WORDS = r"(?:password|passphrase|passwd|secret_key|secret|psk|private_key)(?:_enc)?"
_KEY = rf"[\w.]*?{_WORDS}"
# what both key patterns below need somewhere: a key word, then `=` or `:` (one search
# spares the two substitutions in text that merely mentions a passphrase)
_KEYED = re.compile(rf"""(?i){_WORDS}["']?\s*[=:]""")
_QUOTED = re.compile(rf"""(?ix)(?<![\w-])(["']?{_KEY}["']?\s*[=:]\s*)(["'])(.*?)(?<!\\)\2""")
_BARE = re.compile(rf"""(?ix)(?<![\w-])({_KEY}\s*[=:]\s*)(?!["'])([^\s,;)}}\]]+)""")
_CLI_SET = re.compile(
    r"""(?i)(\bset\s+(?:wan\s+pppoe\s+password|wlan\s+\S+\s+passphrase)\s+)("(?:[^"\\]|\\.)*"|\S+)"""
)
_RUN = re.compile(r"\S+")
_HEADS = re.compile(rf"(?=(\S{{{MIN_SECRET_LENGTH}}}))")  # every MIN_SECRET_LENGTH non-blanks
# every key the three patterns above look for contains one of these: text without any of
# them is not searched by the patterns at all (most of what is logged)
_HINTS = ("pass", "secret", "psk", "private_key")

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class Redactor:
    """Masks secrets in text. Known secrets are held in memory only, as long as it lives."""

    def __init__(self) -> None:
        self._words: set[str] = set()  # secrets without whitespace
        # their lengths, by their first MIN_SECRET_LENGTH characters: bit n is set when a
        # secret of n characters starts so (one int per prefix, not a set: a daemon that
        # reads every unit's passphrases holds one entry per passphrase)
        self._lengths: dict[str, int] = {}
        self._phrases: set[str] = set()  # secrets with whitespace inside: searched as text

    def add_secret(self, value: str) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        if _RUN.fullmatch(value):
            self._words.add(value)
            prefix = value[:MIN_SECRET_LENGTH]
            self._lengths[prefix] = self._lengths.get(prefix, 0) | 1 << len(value)
        else:
            self._phrases.add(value)

    def redact(self, text: str) -> str:
        lowered = text.lower()
        if any(hint in lowered for hint in _HINTS):
            text = _CLI_SET.sub(lambda m: m.group(1) + MASK, text)
            if _KEYED.search(text):
                text = _QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", text)
                text = _BARE.sub(lambda m: m.group(1) + MASK, text)
        for phrase in self._phrases:
            if phrase in text:
                text = text.replace(phrase, MASK)
        if self._words:
            for hit in sorted(self._known_in(text), key=len, reverse=True):
                text = text.replace(hit, MASK)
        return text

    def _known_in(self, text: str) -> set[str]:
        # The first few characters at every position of the text's non-blank runs (found in
        # one regex pass) are met against the secrets' first few characters in one set
        # operation; only a secret that starts so is compared, where it starts, at its own
        # length. The cost follows the message, not the number of secrets or their lengths.
        hits: set[str] = set()
        lengths_of, words = self._lengths, self._words
        for first in lengths_of.keys() & set(_HEADS.findall(text)):
            start = text.find(first)
            while start >= 0:
                lengths = lengths_of[first]
                while lengths:
                    lowest = lengths & -lengths
                    lengths ^= lowest
                    # a window reaching past its run holds a blank: never a secret word
                    window = text[start : start + lowest.bit_length() - 1]
                    if window in words:
                        hits.add(window)
                start = text.find(first, start + 1)
        return hits

    def scrub(self, record: logging.LogRecord) -> None:
        """Replace the record's message, exception and extra text by their redacted forms."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not let its arguments through
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info != (None, None, None):
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not isinstance(value, int | float | bool | type(None)):
                setattr(record, key, self.redact(str(value)))


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs every record passing through the handler."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        self.redactor.scrub(record)
        return True


def install_redaction(redactor: Redactor) -> Callable[[], None]:
    """Scrub every log record as it is created, process-wide. Returns the undo function."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.scrub(record)
        return record

    logging.setLogRecordFactory(factory)

    def uninstall() -> None:
        logging.setLogRecordFactory(previous)

    return uninstall
