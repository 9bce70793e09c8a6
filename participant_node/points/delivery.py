"""Moving the messages to the peers, and the recovery pass that drives every transfer to an end.

Two things wait to be sent: reserve messages and the outbox. A reserve message waits while its
source row is "reserved" (the row is the message: ``SourceSide.awaiting_answer``), until the
peer's answer or the timeout decides the transfer; the outbox (``points_outbox``) holds the posts
and voids of decided transfers until the peer acknowledges them.

The request thread that reserved a batch sends its reserve message and records the decisions;
it hands the posts to the pump in memory (the rows are in the outbox too), and the pump sends
every post handed to it since its last wake-up in one message per peer (many transfers'
decisions share one request, as TigerBeetle batches its events) without reading them back from
the outbox. The pump also resends what stayed unanswered for ``resend_after_s``: the reserve
messages of reservations that old, and the outbox rows that old (posts, and the voids of the
recovery pass). A row leaves the outbox only when the peer acknowledged it; acknowledged rows are
deleted in one transaction per wake-up; a crash before that resends them, and the peer answers a
repeated post with its first outcome. A database written before reserves left the outbox may
still hold "reserve" rows: the pump sends the reserve message of each one still reserved (with the
others of its peer) and deletes those whose transfer is decided.

The recovery pass (at start-up, periodically, and on ``loyalfed points recover``):
1. as source, void every reservation whose timeout passed without the peer's answer (the
   decision is ours: presumed abort) and queue the void for the peer;
2. resend every reserve message and the whole outbox until nothing is left or the peers stop
   answering;
3. as destination, ask each source for its decision on reservations that stayed open, and post or
   void them accordingly.
After a pass with both nodes up, nothing is pending on either side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select

from participant_node.points.bulk_statements import delete_in
from participant_node.points.destination_side import DestinationSide
from participant_node.points.errors import PeerError
from participant_node.points.interchange_rows import OUTBOX, load_rows
from participant_node.points.ledger import Ledger
from participant_node.points.peer_client import PeerClient
from participant_node.points.source_side import SourceSide, TransferReceipt
from participant_node.points.wire import (
    DecisionRequest,
    ReserveRequest,
    ResolveAction,
    ResolveRequest,
    TransferDecision,
)

__all__ = ["Delivery", "RecoveryReport"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryReport:
    """What a recovery pass did. ``outbox_sent`` counts the messages the peers answered (reserves
    decided, outbox rows acknowledged); ``outbox_left`` the messages still waiting: source
    reservations awaiting their peer's answer plus the posts and voids left in the outbox."""

    voided_expired: int
    outbox_sent: int
    outbox_left: int
    resolved_in_doubt: int
    in_doubt_left: int

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


class Delivery:
    def __init__(
        self,
        ledger: Ledger,
        source: SourceSide,
        destination: DestinationSide,
        peers: Mapping[str, PeerClient],
        *,
        batch: int = 2_000,
        reserve_batch: int = 500,
        resend_after_s: float = 1.0,
    ) -> None:
        self.ledger, self.source, self.destination, self.peers = ledger, source, destination, peers
        self.batch, self.reserve_batch, self.resend_after_s = batch, reserve_batch, resend_after_s
        self._wake = threading.Event()
        self._posts: dict[str, list[TransferDecision]] = {}  # handed over by send_reserves, per peer
        self._acked: list[str] = []  # keys whose post the peer answered, still in the outbox
        self._acked_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _peer(self, peer: str) -> PeerClient:
        client = self.peers.get(peer)
        if client is None:
            raise PeerError(f"no address configured for partner {peer}")
        return client

    def send_reserves(self, keys: list[str]) -> list[TransferReceipt]:
        """Send the reserve messages for ``keys`` now (read back from the ledger), as ``send_messages``."""
        return self.send_messages(self.source.reserve_messages(keys))

    def send_messages(self, messages: Mapping[str, ReserveRequest]) -> list[TransferReceipt]:
        """Send the reserve message per peer, decide on the answers and hand the posts to the pump;
        returns the receipts of the transfers the peers answered (unanswered ones stay reserved,
        and the pump resends them)."""
        receipts: list[TransferReceipt] = []
        for peer, message in messages.items():
            try:
                reply = self._peer(peer).reserve(message)
            except PeerError as err:
                _LOG.info("reserve to %s deferred: %s", peer, err)
                continue
            decided, posts = self.source.apply_replies(peer, reply)
            receipts += decided
            if posts:
                with self._acked_lock:
                    self._posts.setdefault(peer, []).extend(posts)
                self._wake.set()
        return receipts

    def send_posts(self) -> int:
        """Send the posts handed over since the last call, one message per peer; returns how many
        the peers answered (a post not answered stays in the outbox for the resend)."""
        with self._acked_lock:
            handed, self._posts = self._posts, {}
        answered = 0
        for peer, posts in handed.items():
            for start in range(0, len(posts), self.batch):
                items = tuple(posts[start : start + self.batch])
                try:
                    reply = self._peer(peer).resolve(ResolveRequest(action=ResolveAction.POST, items=items))
                except PeerError as err:
                    _LOG.info("post to %s deferred: %s", peer, err)
                    continue
                with self._acked_lock:
                    self._acked += [r.transfer_id for r in reply.results]
                answered += len(reply.results)
        return answered

    def flush_acknowledged(self) -> int:
        """Delete the outbox rows of handed-over posts the peer answered (one transaction for all)."""
        with self._acked_lock:
            keys, self._acked = self._acked, []
        if keys:
            with self.ledger.transaction() as tx:
                delete_in(tx.conn, OUTBOX, "key", keys, equal={"action": "post"})
        return len(keys)

    def pump_once(self, *, include_fresh: bool = False, scan: bool = True) -> int:
        """Send the posts handed over, then resend, per peer, the reserve messages of up to
        ``batch`` reservations older than ``resend_after_s`` and, per (peer, action), the outbox
        rows that old among its first ``batch`` (all ages with ``include_fresh``; nothing old
        without ``scan``); returns how many messages the peers answered."""
        self.send_posts()
        acknowledged = self.flush_acknowledged()
        if not scan:
            return acknowledged
        cutoff = self.ledger.now_us() - (0 if include_fresh else int(self.resend_after_s * 1_000_000))
        reserves = self.source.awaiting_answer(reserved_by_us=cutoff, limit=self.batch)
        with self.ledger.reading() as conn:
            rows = conn.execute(select(OUTBOX).order_by(OUTBOX.c.seq).limit(self.batch)).all()
        groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
        queued_reserves: dict[str, list[tuple[int, str]]] = {}  # written before reserves left the outbox
        for row in rows:
            if row.created_at_us > cutoff:
                continue
            if row.action == "reserve":
                queued_reserves.setdefault(row.peer, []).append((row.seq, row.key))
            else:
                groups.setdefault((row.peer, row.action), []).append((row.seq, row.key))
        for peer in dict.fromkeys([*reserves, *queued_reserves]):
            acknowledged += self._resend_reserves(reserves.get(peer, []), queued_reserves.get(peer, []))
        for (peer, action), items in groups.items():
            try:
                acknowledged += self._deliver(peer, action, items)
            except PeerError as err:
                _LOG.info("%s to %s deferred: %s", action, peer, err)
        return acknowledged

    def _resend_reserves(self, keys: list[str], queued: list[tuple[int, str]]) -> int:
        """Resend one peer's reserve messages of ``keys`` and of the outbox's ``queued`` reserve
        rows (those still reserved: the message is read back from the rows); delete the queued rows
        whose transfer is decided. Returns how many transfers the peer answered plus the rows deleted."""
        stale = [key for _, key in queued]
        keys = list(dict.fromkeys(keys + stale))
        answered = 0
        for start in range(0, len(keys), self.reserve_batch):  # a peer reserves each in one go
            answered += len(self.send_reserves(keys[start : start + self.reserve_batch]))
        if not stale:
            return answered
        with self.ledger.transaction() as tx:
            rows = load_rows(tx.conn, stale)
            done = [k for k in stale if k not in rows or rows[k].state != "reserved"]
            if done:
                delete_in(tx.conn, OUTBOX, "key", done, equal={"action": "reserve"})
        return answered + len(done)

    def _deliver(self, peer: str, action: str, items: list[tuple[int, str]]) -> int:
        keys = [key for _, key in dict.fromkeys(items)]
        with self.ledger.reading() as conn:
            rows = load_rows(conn, keys)
        decisions = tuple(
            TransferDecision(transfer_id=k, decided_at_us=rows[k].decided_at_us or 0)
            for k in keys
            if k in rows
        )
        answered = {k for k in keys if k not in rows}  # nothing left to tell about these
        if decisions:
            reply = self._peer(peer).resolve(ResolveRequest(action=ResolveAction(action), items=decisions))
            answered |= {r.transfer_id for r in reply.results}
        acknowledged = [seq for seq, key in items if key in answered]  # the rest waits for a next round
        with self.ledger.transaction() as tx:
            delete_in(tx.conn, OUTBOX, "seq", acknowledged)
        return len(acknowledged)

    def resolve_in_doubt(self, *, older_than_s: float) -> tuple[int, int]:
        """As destination: ask each source about reservations open longer than ``older_than_s``."""
        resolved = left = 0
        for peer, ids in self.destination.in_doubt(older_than_s=older_than_s).items():
            for start in range(0, len(ids), self.batch):
                part = tuple(ids[start : start + self.batch])
                try:
                    reply = self._peer(peer).decisions(DecisionRequest(transfer_ids=part))
                except PeerError as err:
                    _LOG.info("decisions from %s deferred: %s", peer, err)
                    left += len(part)
                    continue
                done = self.destination.apply_decisions(peer, reply)
                resolved, left = resolved + done, left + len(part) - done
        return resolved, left

    def recover(self, *, in_doubt_after_s: float = 0.0, rounds: int = 20) -> RecoveryReport:
        """One full recovery pass (see the module docstring)."""
        voided = self.source.void_expired()
        sent = 0
        for _ in range(rounds):
            moved = self.pump_once(include_fresh=True)
            sent += moved
            if moved == 0:
                break
        resolved, left = self.resolve_in_doubt(older_than_s=in_doubt_after_s)
        # Queued reserve rows (an older version's) duplicate reservations awaiting an answer.
        queued = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.action != "reserve")
        with self.ledger.reading() as conn:
            remaining = int(conn.execute(queued).scalar_one())
        remaining += self.source.count_awaiting_answer()
        return RecoveryReport(voided, sent, remaining, resolved, left)

    def start(
        self,
        *,
        interval_s: float = 0.02,
        recovery_every_s: float = 5.0,
        in_doubt_after_s: float = 10.0,
        periodic: Callable[[], object] | None = None,
        post_window_s: float = 0.05,
    ) -> None:
        """Run the pump and, on a thread of its own, the periodic recovery pass.

        Posts handed over less than ``post_window_s`` after the pump last sent wait for that window
        to close (unless a full message is waiting): one message to the peer, one transaction
        there and one acknowledgement flush here carry every batch decided meanwhile, instead of
        one each per batch. A member's receipt does not wait for it (the source has posted); the
        destination's credit lands up to ``post_window_s`` later.

        The recovery pass (voiding timed-out reservations, asking sources about reservations in
        doubt, ``periodic``) runs on its own thread: its write transactions wait for the node's
        write lock behind the batches being reserved and decided, and on the pump's thread those
        waits held back the posts. Measured on ``bench/points_bench.py --modes batched`` with one
        thread: posts reached the destination so late that it asked the source about its
        reservations in doubt (after 2 s) four times per run, a sixth of its write-lock time.
        """
        if self._threads:
            return

        # A message is resent only once it is resend_after_s old, so the reservations awaiting an
        # answer and the outbox are read for resends every quarter of that (a resend waits at most
        # 25 % longer), not on every wake-up: an idle or busy node does not pay read transactions
        # per handed-over batch of posts.
        scan_every_s = self.resend_after_s / 4

        def pump() -> None:
            last_scan = last_pump = 0.0
            while not self._stop.is_set():
                self._wake.wait(interval_s)
                self._wake.clear()
                window_left = last_pump + post_window_s - time.monotonic()
                if window_left > 0 and self._posts_waiting() < self.batch:
                    self._stop.wait(window_left)
                last_pump = time.monotonic()
                try:
                    now = self.ledger.now_us() / 1_000_000
                    scan = now - last_scan >= scan_every_s
                    last_scan = now if scan else last_scan
                    self.pump_once(scan=scan)
                except Exception:  # process boundary of the background thread: log, keep pumping
                    _LOG.exception("points outbox pump failed; retrying")

        def recovery() -> None:
            while not self._stop.wait(recovery_every_s):
                try:
                    self.source.void_expired()
                    self.resolve_in_doubt(older_than_s=in_doubt_after_s)
                    if periodic is not None:
                        periodic()
                except Exception:  # process boundary of the background thread: log, keep going
                    _LOG.exception("points recovery pass failed; retrying")

        self._threads = [
            threading.Thread(target=pump, name="points-outbox", daemon=True),
            threading.Thread(target=recovery, name="points-recovery", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _posts_waiting(self) -> int:
        with self._acked_lock:
            return sum(len(posts) for posts in self._posts.values())

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        self.flush_acknowledged()
