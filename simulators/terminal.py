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

    def feed(self, data: str) -> tuple[str, list[tuple[str, str]]]:
        """Take typed characters; return what to echo and the events they complete."""
        echo: list[str] = []
        events: list[tuple[str, str]] = []
        for ch in data:
            if self._escape:
                # ESC [ … final, ESC O x (application cursor keys), ESC x: all ignored.
                if self._escape == 2:
                    self._escape = 1 if ch in "[O" else 0
                    self._ss3 = ch == "O"
                elif self._ss3 or "@" <= ch <= "~":
                    self._escape = 0
                continue
            if ch == "\n" and self._last_cr:
                self._last_cr = False
                continue
            self._last_cr = ch == "\r"
            if ch in "\r\n":
                echo.append("\r\n")
                events.append((LINE, "".join(self._buf)))
                self._buf.clear()
            elif ch in "\x7f\x08":
                if self._buf:
                    self._buf.pop()
                    echo.append("\b \b")
            elif ch == "\x03":
                echo.append("^C\r\n")
                self._buf.clear()
                events.append((INTERRUPT, ""))
            elif ch == "\x04":
                if not self._buf:
                    events.append((EOF, ""))
            elif ch == "\x15":  # Ctrl-U: erase the line
                echo.append("\b \b" * len(self._buf))
                self._buf.clear()
            elif ch == "\x1b":
                self._escape = 2
            elif ch == "\t" or ch.isprintable():
                self._buf.append(ch)
                echo.append(ch)
        return ("".join(echo) if self.echo else ""), events
