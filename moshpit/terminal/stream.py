"""A VT parser in pyte's shape, hardened against what programs and attackers send.

Differences from ``pyte.Stream``'s parser, each one a bug or a hazard there:

* CSI parameters: colon sub-parameters are understood (``38:2::r:g:b`` is a
  colour, not text); digit runs are capped (pyte's ``int()`` of an endless run
  raises ``ValueError`` on Python >= 3.11, or burns CPU); at most 32 parameters;
  intermediates are recognised (``CSI Ps SP q`` sets the cursor style, ``CSI > c``
  asks for the secondary device attributes) and unknown ones ignore the
  sequence instead of printing it.
* OSC strings are capped at 4096 characters (pyte grows them without bound);
  DCS, SOS, PM and APC strings are swallowed whole instead of printed.
* ``ESC =`` / ``ESC >`` switch the application keypad.
* Nothing a peer sends can raise: the parser has no failure path.
"""

from __future__ import annotations

import pyte
from pyte import control as ctrl

MAX_PARAMS = 32
MAX_DIGITS = 5
MAX_OSC = 4096
MAX_CLIPBOARD_OSC = 64 << 10   # an OSC 52 clipboard write may be this long (dropped, not cut, if longer)
MAX_SUBPARAMS = 8

_STRING_INTRODUCERS = {"P", "X", "^", "_"}        # DCS, SOS, PM, APC
_C1_STRINGS = {"\x90", "\x98", "\x9e", "\x9f"}


class TermStream(pyte.Stream):
    escape = dict(pyte.Stream.escape, **{"=": "set_keypad_application", ">": "set_keypad_numeric"})
    csi = dict(pyte.Stream.csi, **{"S": "scroll_up", "T": "scroll_down", "s": "save_cursor_sco",
                                   "u": "restore_cursor", "b": "repeat_last", "Z": "back_tab",
                                   "r": "set_scroll_region"})
    escape = dict(escape, **{"E": "next_line"})
    events = pyte.Stream.events | {"set_keypad_application", "set_keypad_numeric",
                                   "set_cursor_style", "report_secondary_attributes",
                                   "scroll_up", "scroll_down", "save_cursor_sco", "repeat_last",
                                   "back_tab", "next_line", "set_scroll_region"}

    parsed = 0            # characters taken so far: the cost meter's share of parsing

    def feed(self, data: str) -> None:
        self.parsed += len(data)
        super().feed(data)

    def _parser_fsm(self):
        listener = self.listener
        draw = listener.draw
        debug = listener.debug
        ESC, CSI_C1, OSC_C1 = ctrl.ESC, ctrl.CSI_C1, ctrl.OSC_C1
        ALLOWED_IN_CSI = "".join([ctrl.BEL, ctrl.BS, ctrl.HT, ctrl.LF, ctrl.VT, ctrl.FF, ctrl.CR])
        CAN_OR_SUB = ctrl.CAN + ctrl.SUB
        NUL_OR_DEL = ctrl.NUL + ctrl.DEL

        def dispatcher(mapping):
            table = {event: getattr(listener, attr) for event, attr in mapping.items()}
            return lambda key: table.get(key, debug)

        basic = dispatcher(self.basic)
        sharp = dispatcher(self.sharp)
        escape = dispatcher(self.escape)
        csi = dispatcher(self.csi)

        queued: list[str] = []                # characters to read again (an aborted string)
        while True:
            char = queued.pop(0) if queued else (yield True)
            if char == ESC:
                char = queued.pop(0) if queued else (yield None)
                if char == "[":
                    char = CSI_C1
                elif char == "]":
                    char = OSC_C1
                elif char in _STRING_INTRODUCERS:
                    char = "\x90"            # treat like C1 DCS: swallow the string
                else:
                    if char == "#":
                        sharp((yield None))()
                    elif char == "%":
                        self.select_other_charset((yield None))
                    elif char in "()":
                        # Honoured in UTF-8 too: ncurses draws its lines with ESC ( 0.
                        listener.define_charset((yield None), mode=char)
                    elif char is not None:
                        escape(char)()
                    continue

            if char in self.basic:
                if (char == ctrl.SI or char == ctrl.SO) and self.use_utf8:
                    continue                    # as tmux: no G1 shifting in UTF-8
                basic(char)()
            elif char == CSI_C1:
                groups: list[list[int]] = []    # ';'-separated, each a ':'-separated group
                group: list[int] = []
                current = ""
                private = ""
                intermediate = ""
                while True:
                    char = yield None
                    if char in "?<=>" and not groups and not group and not current:
                        private = char
                    elif char in ALLOWED_IN_CSI:
                        basic(char)()
                    elif char in CAN_OR_SUB:
                        draw(char)
                        break
                    elif "0" <= char <= "9":
                        if len(current) < MAX_DIGITS:
                            current += char
                    elif char == ":" or char == ";":
                        if len(group) < MAX_SUBPARAMS:
                            group.append(min(int(current), 9999) if current else 0)
                        current = ""
                        if char == ";":
                            if len(groups) < MAX_PARAMS:
                                groups.append(group)
                            group = []
                    elif " " <= char <= "/":
                        intermediate = (intermediate + char)[:2]
                    elif "@" <= char <= "~":
                        group.append(min(int(current), 9999) if current else 0)
                        if len(groups) < MAX_PARAMS:
                            groups.append(group)
                        self._dispatch_csi(csi, char, groups, private, intermediate)
                        break
                    else:
                        break                   # not a CSI byte: drop the sequence
            elif char == OSC_C1:
                text = []
                size = 0
                limit = MAX_OSC
                while True:
                    char = yield None
                    if char == ESC:
                        after = yield None
                        if after != "\\":
                            queued[:0] = [ESC, after]   # ESC ends the string and starts anew
                        break
                    if char in (ctrl.BEL, ctrl.ST_C1) or char in CAN_OR_SUB:
                        break
                    if size < limit:
                        text.append(char)
                        size += 1
                        if size == 3 and text == ["5", "2", ";"]:
                            limit = MAX_CLIPBOARD_OSC + 1
                param = "".join(c for c in text if c >= " " and not "\x7f" <= c <= "\x9f")
                code, _, value = param.partition(";")
                if code in ("0", "1"):
                    listener.set_icon_name(value)
                if code in ("0", "2"):
                    listener.set_title(value)
                if code == "52" and size <= MAX_CLIPBOARD_OSC:
                    listener.set_clipboard(value)
            elif char in _C1_STRINGS or char == "\x90":
                while True:                     # swallow until ST (or BEL, leniently)
                    char = yield None
                    if char == ESC:
                        char += yield None
                    if char in (ctrl.BEL, ctrl.ST_C0, ctrl.ST_C1):
                        break
            elif char not in NUL_OR_DEL:
                draw(char)

    def _dispatch_csi(self, csi, final: str, groups: list, private: str, intermediate: str) -> None:
        listener = self.listener
        params = _flatten(groups, final)
        if intermediate:
            if intermediate == " " and final == "q":
                listener.set_cursor_style(params[0] if params else 0)
            return                              # other intermediates: not supported, ignored
        if private == ">":
            if final == "c" and (not params or params[0] == 0):
                listener.report_secondary_attributes()
            return
        if private in ("<", "="):
            return
        if private == "?" and final == "m":
            return                              # private SGR (xterm's ?4m query): not ours
        try:
            if private == "?":
                csi(final)(*params, private=True)
            else:
                csi(final)(*params)
        except (TypeError, ValueError, IndexError, KeyError, AssertionError, UnboundLocalError,
                AttributeError, OverflowError):
            listener.malformed += 1             # pyte rejects the parameters: ignore the sequence


def _flatten(groups: list[list[int]], final: str) -> list[int]:
    """Colon groups -> plain parameters. For SGR, ``38:2:cs:r:g:b`` and ``38:2:r:g:b``
    become ``38;2;r;g;b``, ``38:5:n`` becomes ``38;5;n`` and ``4:0`` is ``24``;
    elsewhere a group stands for its first number."""
    out: list[int] = []
    for group in groups:
        head = group[0]
        if len(group) == 1 or final != "m":
            out.append(head)
        elif head in (38, 48, 58):
            if group[1] == 2 and len(group) >= 5:
                if head != 58:                  # 58: underline colour, not modelled
                    out.extend([head, 2, *group[-3:]])
            elif group[1] == 5 and len(group) >= 3:
                if head != 58:
                    out.extend([head, 5, group[2]])
        elif head == 4:
            out.append(24 if group[1] == 0 else 4)
        else:
            out.append(head)
    return out
