"""A small line editor for the units' interactive CLI: echo, backspace, Ctrl-C, Ctrl-D.

A real unit's CLI does this itself; so does ours, instead of asyncssh's general-purpose
editor, whose per-session set-up costs far more CPU than a whole session should.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LINE, INTERRUPT, EOF = "line", "interrupt", "eof"


@dataclass
class LineEditor:
    echo: bool = True
    _buf: list[str] = field(default_factory=list)
    _escape: int = 0  # characters of an escape sequence still to swallow
    _last_cr: bool = False
    _ss3: bool = False
    _input: str = ""

    def feed(self, data: str) -> None:
        """Take typed characters; `next()` hands them back a line at a time."""
        self._input += data

    def next(self) -> tuple[str, tuple[str, str] | None]:
        """What to echo up to the next finished line (or all input), and that event.

        Type-ahead stays queued: the second line a client sent in one go is echoed only
        after the first has been answered, behind its own prompt, as a unit's CLI does.
        """
        echo: list[str] = []
        event: tuple[str, str] | None = None
        used = 0
        for used, ch in enumerate(self._input, start=1):  # noqa: B007 - used after the loop
            event = self._take(ch, echo)
            if event is not None:
                break
        else:
            used = len(self._input)
        self._input = self._input[used:]
        return ("".join(echo) if self.echo else ""), event

    def _take(self, ch: str, echo: list[str]) -> tuple[str, str] | None:
        if self._escape:
            # ESC [ … final, ESC O x (application cursor keys), ESC x: all ignored.
            if self._escape == 2:
                self._escape = 1 if ch in "[O" else 0
                self._ss3 = ch == "O"
            elif self._ss3 or "@" <= ch <= "~":
                self._escape = 0
            return None
        if ch == "\n" and self._last_cr:
            self._last_cr = False
            return None
        self._last_cr = ch == "\r"
        if ch in "\r\n":
            echo.append("\r\n")
            line = "".join(self._buf)
            self._buf.clear()
            return (LINE, line)
        if ch in "\x7f\x08":
            if self._buf:
                self._buf.pop()
                echo.append("\b \b")
        elif ch == "\x03":
            echo.append("^C\r\n")
            self._buf.clear()
            return (INTERRUPT, "")
        elif ch == "\x04":
            if not self._buf:
                return (EOF, "")
        elif ch == "\x15":  # Ctrl-U: erase the line
            echo.append("\b \b" * len(self._buf))
            self._buf.clear()
        elif ch == "\x1b":
            self._escape = 2
        elif ch == "\t" or ch.isprintable():
            self._buf.append(ch)
            echo.append(ch)
        return None
