"""The text of a remote-login session: its transcript, and the echo filter.

The transcript is the session as the audit log keeps it.

What the unit sent back is what the staff member saw: the unit echoes what is typed, so the
commands are in it too. Before it is stored the terminal's control codes are played out
(backspaces erase, escape sequences go) so that what was edited on screen reads as the line
that was sent, and then every password and passphrase is masked: the values the redactor
knows (the unit's stored secrets), and any value after ``set … password|passphrase|secret``.
"""

from __future__ import annotations

import re

from inventory.redact import MASK, Redactor

MAX_CHARS = 256 * 1024  # of a session's output, kept as its head and its tail
MAX_PENDING = 64  # typed lines waiting for their echo; older ones are given up
_PROMPT_END = re.compile(r"[>#$%:] ?$")

# ESC [ params final (CSI), ESC ] … BEL or ST (OSC), ESC and one character, any character.
_TOKEN = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -~]|[\s\S]"
)
# Wider than the redactor's own pattern: any configuration path ending in a secret word,
# as typed at a unit's CLI (`set wlan guest passphrase X`, `set snmp community X`, …).
_SET_SECRET = re.compile(
    r"""(?i)(\bset\s+(?:\S+\s+)*?(?:password|passphrase|secret|community|psk|key)\s+)"""
    r"""("(?:[^"\\]|\\.)*"?|\S+)"""
)


class Transcript:
    """A session's output, added as it comes; `text()` gives the masked, played-out text."""

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self._max = max_chars
        self._head: list[str] = []
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._cut = 0

    def add(self, data: str) -> None:
        room = self._max // 2 - self._head_len
        if room > 0:
            self._head.append(data[:room])
            self._head_len += min(room, len(data))
            data = data[room:]
        if not data:
            return
        self._tail.append(data)
        self._tail_len += len(data)
        while self._tail_len - len(self._tail[0]) >= self._max // 2:
            dropped = self._tail.pop(0)
            self._tail_len -= len(dropped)
            self._cut += len(dropped)

    def text(self, redactor: Redactor) -> str:
        head = play_out("".join(self._head))
        if not self._cut:
            return mask(head + play_out("".join(self._tail)), redactor)
        # The lines cut in two at either edge are dropped: half a secret would not be known.
        head = head.rpartition("\n")[0]
        tail = play_out("".join(self._tail)).partition("\n")[2]
        return mask(f"{head}\n[… {self._cut} characters not kept …]\n{tail}", redactor)


def play_out(raw: str) -> str:
    """`raw` terminal output as the lines a screen shows: backspaces and carriage returns
    move the cursor, what follows overwrites, cursor moves and line erases are played,
    other escape sequences dropped."""
    lines: list[str] = []
    line: list[str] = []
    col = 0
    for match in _TOKEN.finditer(raw.replace("\r\n", "\n")):
        piece, params, final = match.group(), match.group(1), match.group(2)
        if piece == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif piece == "\r":
            col = 0
        elif piece == "\b":
            col = max(col - 1, 0)
        elif final is not None:  # CSI: ESC [ params final
            count = int(params) if params.isdigit() else 1
            if final == "D":
                col = max(col - count, 0)
            elif final == "C":
                col += count
            elif final == "K":
                line = [] if params == "2" else line[:col]
        elif piece == "\t" or piece.isprintable():
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = piece
            else:
                line.append(piece)
            col += 1
    lines.append("".join(line).rstrip())
    return "\n".join(lines)


def mask(text: str, redactor: Redactor) -> str:
    """Every password and passphrase in `text` masked, line by line."""
    lines = [_SET_SECRET.sub(lambda m: m.group(1) + MASK, line) for line in text.split("\n")]
    return redactor.redact("\n".join(lines))


class EchoFilter:
    """For a staff member without a terminal (``ssh`` without ``-t``): their own terminal
    shows what they type, so the unit's echo of each line (the unit always gets a terminal)
    is dropped, and CR LF line ends become LF.

    A line counts as echoed where it follows a prompt (text ending in ``>``, ``#``, ``$``,
    ``%`` or ``:``): the unit echoes type-ahead behind its own prompt, never inside output.
    """

    def __init__(self) -> None:
        self._pending: list[str] = []  # typed lines, "\n" included, not seen echoed yet
        self._partial = ""  # typed text not ended by a newline yet
        self._shown = ""  # the last characters passed on

    def sent(self, data: str) -> None:
        text = self._partial + data.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._partial = text.split("\n")
        self._pending += [line + "\n" for line in lines]
        del self._pending[:-MAX_PENDING]

    def received(self, data: str) -> str:
        data = data.replace("\r\n", "\n")
        kept: list[str] = []
        pos = 0
        while self._pending:
            at = self._echo_at(data, self._pending[0], pos)
            if at < 0:
                break
            kept.append(data[pos:at])
            pos = at + len(self._pending.pop(0))
        kept.append(data[pos:])
        shown = "".join(kept)
        self._shown = (self._shown + shown)[-2:]
        return shown

    def _echo_at(self, data: str, line: str, start: int) -> int:
        at = data.find(line, start)
        while at >= 0:
            if _PROMPT_END.search((self._shown + data[:at])[-2:]):
                return at
            at = data.find(line, at + 1)
        return -1
