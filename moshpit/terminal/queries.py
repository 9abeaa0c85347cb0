"""Keep the server's output from asking the user's terminal anything (reliable mode).

In ``reliable`` mode the shell's bytes are written to the user's terminal as they
are. A terminal *answers* some sequences by typing into its input, which ``mp``
sends to the shell. Three things follow:

* a hostile program can make the terminal type for the user (the echo-back attack:
  set the title, ask for it with ``CSI 21 t``, and the title arrives as keystrokes);
* the server's screen model already answers the device-attribute and cursor
  queries, so with the terminal answering too the shell gets every answer twice;
* OSC 52 lets any program overwrite (or with ``?``, read) the user's clipboard.

``QueryFilter`` drops, as Mosh's emulator does by construction:
* device attributes and status (``CSI c``, ``CSI n``, ``ESC Z``, ENQ);
* reports of the window, title, modes and parameters (``CSI 11/13/14/18-21 t``,
  ``CSI ... $ p``, ``CSI x``);
* DECRQSS and XTGETTCAP (``DCS $ q``, ``DCS + q``);
* colour queries (``OSC 4;N;?``, ``OSC 10..19;?``);
* OSC 52: a clipboard write is let through only when allowed and no larger than
  ``clipboard_max_bytes``; a clipboard read, never.

Everything else passes untouched, in order. Sequences may be split across
``feed`` calls: an unfinished one is held, boundedly, until it ends.
"""

from __future__ import annotations

import re

ESC, BEL, CAN, SUB, ENQ = 0x1B, 0x07, 0x18, 0x1A, 0x05
MAX_CSI = 64               # a CSI longer than this is not one we drop: it passes as it is
HEAD = 16                  # bytes of an OSC/DCS string enough to decide its fate
_WINDOW_REPORTS = {b"11", b"13", b"14", b"15", b"16", b"18", b"19", b"20", b"21"}
_CSI = re.compile(rb"\x1b\[([0-?]*)([ -/]*)([@-~])")
_COLOUR_QUERY = re.compile(rb"(?:4;\d+|1\d);\?")
_LOOK = re.compile(rb"[\x1b\x05]")
_STRING_END = re.compile(rb"[\x07\x1b\x18\x1a]")


def _is_query(params: bytes, intermediates: bytes, final: bytes) -> bool:
    if not intermediates and final in (b"c", b"n", b"x"):   # DA, DSR/CPR, DECREQTPARM
        return True
    if intermediates == b"$" and final == b"p":               # DECRQM
        return True
    return not intermediates and final == b"t" and params.split(b";", 1)[0] in _WINDOW_REPORTS


class QueryFilter:
    def __init__(self, clipboard_max_bytes: int = 0):
        self.clipboard_max_bytes = clipboard_max_bytes
        self.dropped = 0                       # sequences kept from the terminal
        self._held = b""                       # an unfinished sequence, from its ESC
        self._string: str | None = None        # inside an OSC/DCS: "pass", "drop" or "hold"
        self._kept = bytearray()               # a held clipboard write

    def feed(self, data: bytes) -> bytes:
        """The bytes to write to the user's terminal for ``data``, in order."""
        if not self._held and self._string is None and data.find(b"\x1b") < 0 and data.find(b"\x05") < 0:
            return data                     # plain text, the usual case (find is memchr: ~20x a regex)
        buf, self._held = self._held + bytes(data), b""
        out = bytearray()
        i, n = 0, len(buf)
        while i < n:
            if self._string is not None:
                i = self._in_string(buf, i, out)
                continue
            found = _LOOK.search(buf, i)
            if found is None:
                out += buf[i:]
                break
            j = found.start()
            out += buf[i:j]
            if buf[j] == ENQ:                               # answerback
                self.dropped += 1
                i = j + 1
                continue
            i = self._escape(buf, j, out)
            if i < 0:
                self._held = buf[j:]                        # unfinished: wait for the rest
                break
        return bytes(out)

    def _escape(self, buf: bytes, j: int, out: bytearray) -> int:
        """The sequence at ``j`` (an ESC): where to go on, or -1 if it is not all here."""
        if j + 1 >= len(buf):
            return -1
        kind = buf[j + 1]
        if kind == ord("["):
            match = _CSI.match(buf, j, j + MAX_CSI)         # the usual, clean case
            if match is None:
                return self._odd_csi(buf, j, out)
            if _is_query(*match.groups()):
                self.dropped += 1
            else:
                out += match.group(0)
            return match.end()
        if kind == ord("Z"):                                # DECID: identify yourself
            self.dropped += 1
            return j + 2
        if kind in (ord("]"), ord("P")):
            head = buf[j + 2:j + 2 + HEAD]
            end = _STRING_END.search(head)
            if end is None and len(head) < HEAD:
                return -1                                   # too little to decide yet
            if end is not None:
                head = head[:end.start()]                   # decide on this string's bytes only
            self._string = self._verdict(kind == ord("]"), head)
            if self._string == "pass":
                out += buf[j:j + 2]
            elif self._string == "hold":
                self._kept = bytearray(buf[j:j + 2])
            else:
                self.dropped += 1
            return j + 2
        if 0x20 <= kind <= 0x7E:
            out += buf[j:j + 2]                             # ESC 7, ESC ( B, ESC = ...
            return j + 2
        out += buf[j:j + 1]                                 # ESC then a control: the ESC
        return j + 1                                        # is ignored; read on from there

    def _odd_csi(self, buf: bytes, j: int, out: bytearray) -> int:
        """A CSI with control characters inside (a terminal executes them and goes on with
        the sequence: ``ESC [ 6 CR n`` is still a cursor query), cut short, or too long.
        The controls are written before it; an aborted or over-long one is dropped."""
        body, controls = bytearray(), bytearray()
        k = j + 2
        while k < len(buf) and k - j < MAX_CSI:
            byte = buf[k]
            if 0x40 <= byte <= 0x7E:                        # the final byte
                out += controls
                params = bytes(body).rstrip(bytes(range(0x20, 0x30)))
                if _is_query(params, bytes(body[len(params):]), bytes([byte])):
                    self.dropped += 1
                else:
                    out += b"\x1b[" + body + bytes([byte])
                return k + 1
            if 0x20 <= byte <= 0x3F:
                body.append(byte)
            elif byte in (ESC, CAN, SUB) or byte >= 0x80:
                out += controls                             # aborted: nothing to show
                return k
            else:
                controls.append(byte)                       # executed within the CSI
            k += 1
        if k - j >= MAX_CSI:
            out += controls
            self.dropped += 1
            return k
        return -1                                           # not all here yet

    def _verdict(self, osc: bool, head: bytes) -> str:
        if not osc:
            return "drop" if head[:2] in (b"$q", b"+q") else "pass"
        if _COLOUR_QUERY.match(head):
            return "drop"
        if head.partition(b";")[0] != b"52":
            return "pass"
        return "hold" if self.clipboard_max_bytes else "drop"   # read or write: seen at its end

    def _in_string(self, buf: bytes, i: int, out: bytearray) -> int:
        """Inside an OSC/DCS string: its bytes up to its end (BEL or ESC \\), passed,
        dropped or held. CAN, SUB or an ESC starting something else abort it."""
        found = _STRING_END.search(buf, i)
        if found is None:
            self._take(buf[i:], out)
            return len(buf)
        end = found.start()
        if buf[end] == ESC and end + 1 >= len(buf):
            self._take(buf[i:end], out)
            self._held = buf[end:]                          # ESC last: ST or not, next time
            return len(buf)
        if buf[end] == BEL:
            closing = 1
        elif buf[end] == ESC and buf[end + 1] == ord("\\"):
            closing = 2
        else:
            closing = 0                                     # aborted: the rest is read anew
        self._take(buf[i:end + closing], out)
        if self._string == "hold" and closing:
            if _is_clipboard_read(bytes(self._kept)):
                self.dropped += 1
            else:
                out += self._kept                           # a clipboard write, within bounds
        self._string, self._kept = None, bytearray()
        return end + closing

    def _take(self, data: bytes, out: bytearray) -> None:
        if self._string == "pass":
            out += data
        elif self._string == "hold":
            self._kept += data
            if len(self._kept) > self.clipboard_max_bytes + HEAD:
                self._string, self._kept = "drop", bytearray()   # too big for the clipboard
                self.dropped += 1


def _is_clipboard_read(osc: bytes) -> bool:
    """``ESC ] 52 ; selection ; ? ...``: the data field asks for the clipboard's contents,
    however long the selection field before it."""
    fields = osc[2:].split(b";", 2)
    return len(fields) < 3 or fields[2].startswith(b"?")
