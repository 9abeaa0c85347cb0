"""What the channel sends, and when (no I/O).

One datagram's frames always come in this order, each within the budget left:
PING, ACK, NAK, GONE, ECHO_ACK, STATE_ACK, the unordered frames (screen chunks, an
unreliable CLOSE), one bundle of the ordered flow, and PADDING. Resends go before
anything new. The send-side deadlines (keepalive, hello retry, socket hop, ACK,
probe, next screen, CLOSE resend) are kept here too, beside what they trigger.
"""

from __future__ import annotations

from collections import deque

from moshpit import codec
from moshpit.crypto import PacketSealer
from moshpit.protocol import frames
from moshpit.protocol.builder import PayloadBuilder
from moshpit.protocol.closing import ChannelState, CloseCode
from moshpit.protocol.events import MoveRequested
from moshpit.protocol.parts import ChannelParts
from moshpit.protocol.streampath import is_stream
from moshpit.protocol.wire import ACK_SIZE, FRAME_OVERHEAD, OSN_SIZE, PING_SIZE

F = codec  # frame type constants live in the codec


class Transmitter:
    def __init__(self, parts: ChannelParts, sealer: PacketSealer, now: float):
        self._p = parts
        self._sealer = sealer
        self.last_send = now
        self._unordered_out: deque[tuple[int, bytes]] = deque()
        self._probes_heard: list = []        # addresses whose PATH_PROBE is to be answered
        config = parts.config
        self._max_payload = config.max_datagram_size - codec.OVERHEAD
        self.chunk_size = (self._max_payload - PING_SIZE - ACK_SIZE - OSN_SIZE - FRAME_OVERHEAD
                           - frames.SCREEN_HEADER_SIZE - 16)   # one screen chunk per datagram

    def path_changed(self) -> None:
        """Client: a new source address. Tell the server at once, padded, and resend the
        newest bundle (likely lost on the old path)."""
        p = self._p
        p.intent.force = p.intent.pad = True
        if p.path is not None:
            p.path.changed()
        p.send.resend_newest()
        p.stats["path_moves"] += 1

    def use_path(self, addr) -> None:
        """Client: send to ``addr`` now (see Channel.use_path); the same path again: a
        datagram goes on it at once (a server that followed a probe elsewhere comes back)."""
        p = self._p
        if addr == p.network.addr:
            p.intent.force = True
            return
        p.network.move_to(addr)
        p.network.validated = True       # the client's own choice of where to send
        p.send.path_is_stream(is_stream(addr))
        self.path_changed()

    def probe_datagram(self, now: float) -> bytes:
        """Client: one padded datagram for the path not in use (transport.py): a
        PATH_PROBE and a PING, which the server answers there without moving there,
        and nothing of the ordered flow."""
        self._p.stats["path_probes"] += 1
        return self._side_datagram(now, probe=True)

    def answer_probe(self, addr) -> None:
        """Server: a PATH_PROBE came from ``addr``; answer it there (next send), staying
        where we are: UDP may work one way only, and output sent after a probe must not
        go where it is lost."""
        if addr not in self._probes_heard:
            self._probes_heard.append(addr)

    def _side_datagram(self, now: float, *, probe: bool) -> bytes:
        """A PING and an ACK for a path other than the one in use (padded, with the
        PATH_PROBE frame, from the client; as small as it comes from the server)."""
        p = self._p
        out = PayloadBuilder(self._max_payload)
        if probe:
            out.add(F.FRAME_PATH_PROBE, b"")
        out.add(F.FRAME_PING, frames.pack_ping(p.clock.next_ts(now), *p.clock.echo(now, frames.NO_ECHO)))
        out.add(F.FRAME_ACK, frames.pack_u64(p.receive.next_expected))
        if probe:
            out.pad()
        payload = out.payload()
        p.stats["datagrams_sent"] += 1
        p.stats["bytes_sent"] += len(payload) + codec.OVERHEAD
        return self._sealer.seal_many([payload])[0]

    def keys_arrived(self) -> None:
        """Server: keystrokes came. Forwarded data yields to typing for a while
        (StreamPacer), and the screen that answers them goes at once (ScreenSender)."""
        self._p.send.stream_pacer.typed()
        if self._p.screens_out is not None:
            self._p.screens_out.typed()

    def echo_ack(self, keystrokes: int, flags: int, now: float) -> None:
        """In the ordered flow, after the output it accounts for; else labelled with the
        newest screen state, on every datagram for a while."""
        p = self._p
        if p.send_reliable:
            p.send.add(F.FRAME_ECHO_ACK, frames.pack_echo_ack(0, keystrokes, flags))
        else:
            p.echo_acks.say(p.screen_state, keystrokes, flags, now)
            p.intent.force = True

    def repaint(self) -> None:
        """Send the whole screen next: a snapshot in the stream where the screen travels
        in it (one queued is enough), else a restart of the screen flow from nothing."""
        p = self._p
        screens = p.screens_out
        assert screens is not None, "only the server repaints"
        if not p.send_reliable:
            screens.restart()
        elif screens.state != 0 and not p.send.holds(F.FRAME_SCREEN):
            for body in screens.snapshot(self.chunk_size):
                p.send.add(F.FRAME_SCREEN, body)

    # ------------------------------------------------------------------ timers
    def can_send(self) -> bool:
        """Whether a datagram could go out now: a known peer, and budget if it is unvalidated."""
        network = self._p.network
        return network.addr is not None and network.worth_a_datagram()

    def deadlines(self) -> list[float]:
        """When something may next be due to send (empty: nothing can go before the peer speaks)."""
        p = self._p
        if not self.can_send():
            return []
        deadlines = [self.last_send + p.config.keepalive_interval]
        for deadline in (self._hop_deadline(), self._hello_retry_at(), p.receive.ack_due,
                         p.send.probe_at, self._screen_deadline(), self._close_resend_at()):
            if deadline is not None:
                deadlines.append(deadline)
        if p.screens_in.ack_pending:
            deadlines.append(self.last_send)  # at once: the server diffs from what we ack
        if p.send.streams_held:               # the next burst of stream data, after a turn
            deadlines.append(max(self.last_send, p.send.stream_pacer.resume_at))
        return deadlines

    def handle_timer(self, now: float, last_heard: float, heard_any: bool) -> None:
        p = self._p
        if now >= self.last_send + p.config.keepalive_interval:
            p.intent.force = True
        hop = self._hop_deadline()
        if hop is not None and now >= hop and p.path is not None:
            p.path.moved(now)
            p.events.append(MoveRequested(now - last_heard))
        hello = self._hello_retry_at()
        if hello is not None and now >= hello:
            p.intent.force = p.intent.pad = True
        if p.send.probe_at is not None and now >= p.send.probe_at:
            p.send.probe(now, p.rtt.rto, closing=p.closing.state is ChannelState.CLOSING)
            p.stats["probes"] += 1
            if p.is_client and not heard_any:
                p.intent.pad = True        # never heard back: the padded hello may have been lost

    def _hop_deadline(self) -> float | None:
        p = self._p
        if p.path is None or p.closing.state is not ChannelState.OPEN:
            return None
        return p.path.hop_deadline(p.rtt.rto, p.config.keepalive_interval)

    def _hello_retry_at(self) -> float | None:
        p = self._p
        if p.path is None:
            return None
        return p.path.hello_retry_at(self.last_send, p.config.keepalive_interval, p.rtt)

    def _close_resend_at(self) -> float | None:
        """When an unreliable flow next repeats its CLOSE: once the final screen is
        acknowledged (or half the close timeout has gone), then every RTO."""
        p = self._p
        if p.closing.state is not ChannelState.CLOSING or p.send_reliable:
            return None
        screens = p.screens_out
        acked = screens is None or screens.acked >= screens.state
        return p.closing.resend_at(acked, p.rtt.rto)

    def _screen_deadline(self) -> float | None:
        p = self._p
        if p.screens_out is None or p.send_reliable:
            return None
        return p.screens_out.deadline(p.rtt)

    # ------------------------------------------------------------------- send
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, object]]:
        """Everything due now, as ``(datagram, address)`` pairs."""
        p = self._p
        peer = p.network.addr
        if peer is None:
            return []
        close_at = self._close_resend_at()
        if close_at is not None and now >= close_at:
            self._unordered_out.append((F.FRAME_CLOSE, p.closing.frame()))
            p.closing.sent(now)
        if p.closing.reply_pending:
            p.closing.reply_pending = False
            self._unordered_out.append((F.FRAME_CLOSE, frames.pack_close(CloseCode.NORMAL, "")))
        answers = [(self._side_datagram(now, probe=False), addr) for addr in self._probes_heard]
        self._probes_heard.clear()
        self._prepare_screen(now)
        if not p.network.validated:
            p.intent.elicit = True     # one "answer me" per batch, never a burst of them
        p.send.start_turn(now)
        payloads = self._resends(now)
        while True:
            payload = self._build_payload(now)
            if payload is None:
                break
            payloads.append(payload)
        p.send.end_turn(now)
        if not payloads:                     # the common answer on a quiet channel: no call
            return answers
        return answers + [(datagram, peer) for datagram in self._sealer.seal_many(payloads)]   # one call a turn

    def _resends(self, now: float) -> list[bytes]:
        """The NAKed and probed bundles again, as far as the budget allows (the rest later)."""
        send = self._p.send
        payloads: list[bytes] = []
        pending = send.take_resends()
        for i, osn in enumerate(pending):
            bundle = send.ring.lookup(osn)
            if bundle is None:
                send.gone.add(osn)
                continue
            for _ in range(send.copies(osn)):
                payload = self._build_payload(now, resend=bundle)
                if payload is None:
                    break
                payloads.append(payload)
                self._p.stats["retransmitted"] += 1
            else:
                continue
            send.resend.update(pending[i:])   # over the amplification budget: later
            break
        return payloads

    def _prepare_screen(self, now: float) -> None:
        p = self._p
        deadline = self._screen_deadline()
        if deadline is None or now < deadline or p.closing.state is ChannelState.CLOSED:
            return
        assert p.screens_out is not None
        self._unordered_out = deque(   # a newer message supersedes any chunks not yet sent
            (F.FRAME_SCREEN, body) for body in p.screens_out.message(now, self.chunk_size))
        p.stats["screen_messages"] += 1

    def _anything_due(self, now: float) -> bool:
        """Whether a datagram could be worth sending now (never False when one is):
        the send loop always asks once more than it sends, and that last question
        is on every keystroke's path, so it is answered without building anything."""
        p = self._p
        return bool(p.intent.force or p.receive.naks or p.send.gone or p.screens_in.ack_pending
                    or self._unordered_out or p.intent.elicit
                    or (p.intent.pad and p.is_client)
                    or p.receive.ack_is_due(now)
                    or self._ordered_may_go())

    def _ordered_may_go(self) -> bool:
        p = self._p
        return p.closing.state is not ChannelState.CLOSED and p.send.may_go(p.rtt.srtt, p.rtt.min_rtt)

    def _build_payload(self, now: float, resend: bytes | None = None) -> bytes | None:
        """The frames of one datagram of whatever is due (sealed by the caller, with the
        rest of its turn), or None. With ``resend``, that stored bundle goes out again
        under a fresh packet number with fresh PING and ACK frames."""
        p = self._p
        if resend is None and not self._anything_due(now):
            return None
        budget = self._max_payload
        allowance = p.network.allowance()
        if allowance is not None:
            allowance -= codec.OVERHEAD
            if allowance < PING_SIZE + ACK_SIZE + (len(resend) if resend else 0):
                return None       # unvalidated address, budget spent: wait for it to answer
            budget = min(budget, allowance)
        out = PayloadBuilder(budget)
        ts = p.clock.next_ts(now)
        out.add(F.FRAME_PING, frames.pack_ping(ts, *p.clock.echo(now, frames.NO_ECHO)))
        ack_sent = out.add(F.FRAME_ACK, frames.pack_u64(p.receive.next_expected))
        if resend is None:
            worth_sending = self._write_control(out, now) | self._write_ordered(out, now)
        else:
            out.add_bundle(resend)
            worth_sending = True
        eliciting = bool(out.bundle)         # ordered frames (or a resend): the peer ACKs them
        if p.intent.pad and p.is_client:
            out.pad()
            worth_sending = eliciting = True
        elif p.intent.elicit and out.add(F.FRAME_PADDING, b""):
            worth_sending = eliciting = True   # "answer me now": the answer's echo validates the address
        if not (worth_sending or p.intent.force or p.receive.ack_is_due(now)):
            p.clock.give_back(ts)     # nothing sent
            return None
        payload = out.payload()
        if ack_sent:
            p.receive.acked()
        p.intent.clear()
        self._count_sent(len(payload) + codec.OVERHEAD, ts, now)
        if eliciting and p.path is not None:
            p.path.on_sent(now)             # an answer is due: silence from here counts
        return payload

    def _count_sent(self, size: int, ts: int, now: float) -> None:
        self.last_send = now
        self._p.stats["datagrams_sent"] += 1
        self._p.stats["bytes_sent"] += size
        self._p.network.sent(size, ts)

    def _write_control(self, out: PayloadBuilder, now: float) -> bool:
        """NAK, GONE, ECHO_ACK, STATE_ACK and the unordered frames: whether any is worth a datagram."""
        p = self._p
        worth_sending = False
        if p.receive.naks and out.ranges_room > 0:
            out.add(F.FRAME_NAK, frames.pack_ranges(p.receive.take_naks(out.ranges_room)))
            worth_sending = True
        if p.send.gone and out.ranges_room > 0:
            out.add(F.FRAME_GONE, frames.pack_ranges(p.send.take_gone(out.ranges_room)))
            worth_sending = True
        echo_ack = p.echo_acks.current(now)
        if echo_ack is not None:
            out.add(F.FRAME_ECHO_ACK, echo_ack)
        if p.screens_in.ack_pending and out.add(F.FRAME_STATE_ACK, frames.pack_u64(p.screen_state)):
            p.screens_in.ack_pending = False
            worth_sending = True
        while self._unordered_out and out.add(*self._unordered_out[0]):
            self._unordered_out.popleft()
            worth_sending = True
        return worth_sending

    def _write_ordered(self, out: PayloadBuilder, now: float) -> bool:
        """A new bundle of the ordered flow, if the window lets one go."""
        if not self._ordered_may_go():
            return False
        p = self._p
        room = min(out.left, self._max_payload - PING_SIZE - ACK_SIZE) - OSN_SIZE
        ordered = p.send.take(room)
        if not ordered:
            return False
        osn, bundle = p.send.bundle(ordered, now, p.rtt.rto)
        if any(ft == F.FRAME_CLOSE for ft, _ in ordered):
            p.closing.osn = osn
        out.add_bundle(bundle)
        return True
