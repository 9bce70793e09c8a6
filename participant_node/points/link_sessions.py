"""Link sessions between two nodes: run the PSI of ``linking`` over HTTP and store the tokens.

The initiator's ``link(peer)`` opens a session, finishes it and sends the reveal; the responder
keeps its half in memory between the two requests (sessions time out). Both sides then replace
their links for the agreement's epoch and open ledger accounts for the linked members. A set
smaller than ``min_set_size`` is refused on either side: matching a handful of candidates would
test individual members (a probing attack on PSI).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from audit.lineage_event import EventType
from participant_node.points import link_store
from participant_node.points.agreement_book import AgreementBook
from participant_node.points.audit_trail import record_event
from participant_node.points.errors import LinkError, PeerError
from participant_node.points.interchange_rows import member_account
from participant_node.points.ledger import Ledger
from participant_node.points.ledger_rules import AccountFlags
from participant_node.points.linking import LinkContext, LinkInitiator, LinkResponder
from participant_node.points.member_directory import MemberDirectory, PooledDirectory
from participant_node.points.peer_client import PeerClient
from participant_node.points.wire import LinkAnswer, LinkOpening, LinkReveal, LinkRevealReply, opening_digest
from psi.group_engine import GroupEngine
from psi.ristretto255 import ELEMENT_BYTES

__all__ = ["LinkReport", "LinkSessions"]

_SESSION_TIMEOUT_S = 300.0

_Reply = TypeVar("_Reply", LinkAnswer, LinkRevealReply)


@dataclass(frozen=True)
class LinkReport:
    peer: str
    agreement_id: str
    epoch: int
    own_set: int
    peer_set: int
    linked: int

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Open:
    peer: str
    context: LinkContext
    member_ids: list[str]
    responder: LinkResponder
    opened: float
    peer_set: int
    agreement_hash: str  # the interchange agreement the link runs under (its lineage event's policy hash)


def _retrying(call: Callable[[], _Reply], attempts: int) -> _Reply:
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except PeerError:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError as err:
        raise LinkError("link message: elements are not base64") from err


class LinkSessions:
    def __init__(
        self,
        partner: str,
        ledger: Ledger,
        book: AgreementBook,
        directory: MemberDirectory | PooledDirectory | None,
        *,
        min_set_size: int,
        engine: GroupEngine | None = None,
    ) -> None:
        self.partner, self.ledger, self.book, self.directory = partner, ledger, book, directory
        self.min_set_size = min_set_size
        self.engine = engine or GroupEngine(1)
        self._open: dict[str, _Open] = {}
        self._finished: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def _directory(self) -> MemberDirectory | PooledDirectory:
        if self.directory is None:
            raise LinkError("this node has no partner data folder to link members from")
        return self.directory

    def _context(self, peer: str) -> tuple[LinkContext, str]:
        agreement = self.book.for_peer(peer, datetime.now(UTC))
        context = LinkContext(agreement.agreement_id, agreement.epoch, agreement.partners)
        return context, agreement.content_hash()

    def link(self, peer: str, client: PeerClient, *, attempts: int = 5) -> LinkReport:
        """Initiate a session with ``peer`` and store the links both sides derived.

        A lost message is sent again: the same opening (an answer to another opening is discarded),
        the same reveal (the responder answers a repeated reveal with its first answer); a session
        that still fails is begun anew.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._link_once(peer, client, attempts)
            except PeerError:
                if attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def _link_once(self, peer: str, client: PeerClient, attempts: int) -> LinkReport:
        context, digest = self._context(peer)
        matching = self._directory().matching_set(peer)
        self._check_size(len(matching.items), "this node's")
        initiator = LinkInitiator(matching.items, context, engine=self.engine)
        opening = LinkOpening(
            agreement_id=context.agreement_id,
            agreement_hash=digest,
            epoch=context.epoch,
            elements=_b64(initiator.blinded()),
        )
        # A lost opening or answer: the same opening again (the responder opens a session per
        # opening it receives; the client keeps only an answer naming this opening).
        answer = _retrying(lambda: client.link_open(opening), attempts)
        peer_blob = _unb64(answer.elements)
        tokens, reveal = initiator.finish(_unb64(answer.double), peer_blob)
        message = LinkReveal(
            positions=tuple(p for p, _ in reveal), elements=_b64(b"".join(e for _, e in reveal))
        )
        reply = _retrying(lambda: client.link_reveal(answer.session_id, message), attempts)
        if reply.linked != len(tokens):
            raise LinkError(f"{peer} linked {reply.linked} members, this node {len(tokens)}")
        links = {matching.member_ids[i]: token for i, token in tokens.items()}
        peer_set = len(peer_blob) // ELEMENT_BYTES
        self._store(
            peer, context, links, own_set=len(matching.items), peer_set=peer_set, agreement_hash=digest
        )
        return LinkReport(
            peer, context.agreement_id, context.epoch, len(matching.items), peer_set, len(links)
        )

    def open(self, peer: str, opening: LinkOpening) -> LinkAnswer:
        """Responder, step 2."""
        context, digest = self._context(peer)
        if (opening.agreement_id, opening.agreement_hash, opening.epoch) != (
            context.agreement_id,
            digest,
            context.epoch,
        ):
            raise LinkError("the link opening names another agreement version than this node's")
        blob = _unb64(opening.elements)
        self._check_size(len(blob) // ELEMENT_BYTES, "the peer's")
        matching = self._directory().matching_set(peer)
        self._check_size(len(matching.items), "this node's")
        responder = LinkResponder(matching.items, context, engine=self.engine)
        double, own = responder.answer(blob)
        session_id = secrets.token_hex(16)
        with self._lock:
            self._sweep()
            self._open[session_id] = _Open(
                peer,
                context,
                matching.member_ids,
                responder,
                time.monotonic(),
                len(blob) // ELEMENT_BYTES,
                digest,
            )
        return LinkAnswer(
            session_id=session_id,
            opening_digest=opening_digest(opening.elements),
            double=_b64(double),
            elements=_b64(own),
        )

    def reveal(self, peer: str, session_id: str, reveal: LinkReveal) -> LinkRevealReply:
        """Responder, step 4: derive and store the tokens of the members both sides share."""
        with self._lock:
            finished = self._finished.get(session_id)
            if finished is not None and finished[0] == peer:
                return LinkRevealReply(linked=finished[1])  # a repeated reveal: its first answer
            session = self._open.get(session_id)
            if session is None or session.peer != peer:
                raise LinkError("unknown or expired link session")
            del self._open[session_id]
        blob = _unb64(reveal.elements)
        if len(blob) != ELEMENT_BYTES * len(reveal.positions):
            raise LinkError("link reveal: one element per position")
        elements = [blob[i : i + ELEMENT_BYTES] for i in range(0, len(blob), ELEMENT_BYTES)]
        tokens = session.responder.finish(list(zip(reveal.positions, elements, strict=True)))
        links = {session.member_ids[i]: token for i, token in tokens.items()}
        own = len(session.member_ids)
        self._store(
            peer,
            session.context,
            links,
            own_set=own,
            peer_set=session.peer_set,
            agreement_hash=session.agreement_hash,
        )
        with self._lock:
            self._finished[session_id] = (peer, len(links))
        return LinkRevealReply(linked=len(links))

    def _check_size(self, size: int, whose: str) -> None:
        if size < self.min_set_size:
            raise LinkError(
                f"{whose} set of {size} members is below the minimum of {self.min_set_size} for linking"
            )

    def _sweep(self) -> None:
        cutoff = time.monotonic() - _SESSION_TIMEOUT_S
        for session_id in [s for s, o in self._open.items() if o.opened < cutoff]:
            del self._open[session_id]

    def _store(
        self,
        peer: str,
        context: LinkContext,
        links: dict[str, str],
        *,
        own_set: int,
        peer_set: int,
        agreement_hash: str,
    ) -> None:
        flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        self.ledger.open_accounts((member_account(m), "member", None, flags) for m in links)
        with self.ledger.transaction() as tx:
            link_store.replace_links(tx.conn, context.agreement_id, context.epoch, links, at_us=tx.now_us)
            record_event(
                tx,
                EventType.POINTS_LINKED,
                partner=self.partner,
                peer=peer,
                at_us=tx.now_us,
                policy_hash=agreement_hash,
                details={
                    "linked": len(links),
                    "own_set": own_set,
                    "peer_set": peer_set,
                    "epoch": context.epoch,
                },
            )
