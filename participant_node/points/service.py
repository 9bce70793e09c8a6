"""A node's points interchange, composed: ledger, agreements, links, both sides, delivery, settlement.

The API routes (``api.py``), the standalone runner and the CLI all call this one object; it knows
nothing about HTTP servers. Peers are reached over mTLS with this node's certificate; optional
transport wrappers (the seeded fault plan, a recorder for the capture test) wrap the real
connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from audit.audit_log import AuditLog
from participant_node.data import PartnerData
from participant_node.matching.federation_pki import FederationCertificates
from participant_node.points import point_lots
from participant_node.points.agreement_book import AgreementBook
from participant_node.points.audit_trail import AuditForwarder
from participant_node.points.delivery import Delivery, RecoveryReport
from participant_node.points.destination_side import DestinationSide
from participant_node.points.errors import PeerError, PointsError
from participant_node.points.fault_plan import FaultPlan, FaultyTransport
from participant_node.points.group_commit import GroupCommit
from participant_node.points.interchange_rows import FEE_ACCOUNT, ISSUANCE_ACCOUNT, clearing, member_account
from participant_node.points.ledger import AccountKind, Ledger, account_id
from participant_node.points.ledger_rules import AccountFlags
from participant_node.points.link_sessions import LinkReport, LinkSessions
from participant_node.points.member_directory import MemberDirectory, PooledDirectory
from participant_node.points.node_settings import PointsNodeSettings
from participant_node.points.peer_client import PeerClient
from participant_node.points.settlement_exchange import SettlementExchange
from participant_node.points.source_side import SourceSide, TransferReceipt, TransferRequest
from participant_node.points.store_schema import TABLES
from participant_node.points.wire import ReserveRequest

__all__ = ["PointsService", "TransportWrapper"]

TransportWrapper = Callable[[str, httpx.BaseTransport], httpx.BaseTransport]
_Reserved = tuple[list[TransferReceipt], dict[str, ReserveRequest]]  # what SourceSide.reserve returns


class PointsService:
    def __init__(
        self,
        settings: PointsNodeSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        wrap_transport: TransportWrapper | None = None,
        partner_data: PartnerData | None = None,
        directory: MemberDirectory | PooledDirectory | None = None,
        report_totals: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        # Where settlement totals go: the node service's authenticated coordinator client, when
        # it runs this service; else a plain POST to settings.coordinator_url.
        self._report_totals = report_totals
        self.partner = settings.partner_id
        self.ledger = Ledger(settings.database_url, synchronous=settings.synchronous, clock=clock)
        self.book = AgreementBook.from_folder(self.partner, settings.agreements_dir, settings.officer_keys)
        self.directory = directory or self._directory(clock, partner_data)
        self.pki = FederationCertificates(settings.pki_dir)
        self.faults: dict[str, FaultyTransport] = {}
        self.peers = {p: self._peer_client(p, url, wrap_transport) for p, url in settings.peers.items()}
        self.source = SourceSide(self.partner, self.ledger, self.book, self.directory)
        self.destination = DestinationSide(self.partner, self.ledger, self.book, self.directory)
        self.links = LinkSessions(
            self.partner, self.ledger, self.book, self.directory, min_set_size=settings.min_link_set_size
        )
        self.delivery = Delivery(
            self.ledger, self.source, self.destination, self.peers, resend_after_s=settings.resend_after_s
        )
        self.settlements = SettlementExchange(self.partner, self.ledger, self.book, self._statement_key)
        self.audit = AuditForwarder(self.ledger, self._audit_sink)
        self._audit_log: AuditLog | None = None
        # Reservations run one batch at a time; up to transfers_in_flight batches wait on the peer.
        self._group: GroupCommit[TransferRequest, _Reserved, TransferReceipt] = GroupCommit(
            self.source.reserve,
            self._send_batch,
            max_batch=settings.transfers_per_batch,
            in_flight=settings.transfers_in_flight,
        )
        self._open_base_accounts()

    def _directory(
        self, clock: Callable[[], datetime] | None, data: PartnerData | None
    ) -> MemberDirectory | None:
        if self.settings.partner_dir is None:
            return None
        return MemberDirectory(
            self.settings.partner_dir,
            secret=bytes.fromhex(self.settings.matching_secret),
            id_column=self.settings.id_column,
            default_region=self.settings.default_region,
            clock=clock or (lambda: datetime.now(UTC)),
            data=data,
        )

    def _peer_client(self, peer: str, url: str, wrap: TransportWrapper | None) -> PeerClient:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.pki.certificate(self.partner)), str(self.pki.key(self.partner)))
        # Persistent mTLS connections to the peer (HTTP/1.1 keep-alive, matched by the runner's
        # keep-alive timeout): one handshake per connection, not per message.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=60.0)
        transport: httpx.BaseTransport = httpx.HTTPTransport(verify=context, retries=0, limits=limits)
        if self.settings.fault_seed is not None:
            plan = FaultPlan.uniform(self.settings.fault_seed, self.settings.fault_rate)
            transport = self.faults.setdefault(peer, FaultyTransport(transport, plan))
        if wrap is not None:
            transport = wrap(peer, transport)
        timeout = httpx.Timeout(self.settings.peer_timeout_s)
        return PeerClient(httpx.Client(base_url=url, transport=transport, timeout=timeout), peer=peer)

    def _open_base_accounts(self) -> None:
        peers = {a.peer_of(self.partner) for a in self.book.all()} | set(self.settings.peers)
        none = AccountFlags.NONE
        self.ledger.open_accounts(
            [
                (ISSUANCE_ACCOUNT, AccountKind.ISSUANCE, None, none),
                (FEE_ACCOUNT, AccountKind.FEE, None, none),
                (account_id(AccountKind.EXPIRY), AccountKind.EXPIRY, None, none),
            ]
            + [(clearing(p), AccountKind.CLEARING, p, none) for p in sorted(peers)]
        )

    def _statement_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.pki.key(self.partner).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PointsError("the node key must be an ECDSA key to sign statements")
        return key

    def _audit_sink(self) -> AuditLog | None:
        if self.settings.audit_log is None:
            return None
        if self._audit_log is None:
            self._audit_log = AuditLog.open(self.settings.audit_log)
        return self._audit_log

    def peer(self, partner: str) -> PeerClient:
        client = self.peers.get(partner)
        if client is None:
            raise PeerError(f"no address configured for partner {partner}")
        return client

    # -- what members and operators ask -------------------------------------------------------

    def transfer(self, requests: Sequence[TransferRequest]) -> list[TransferReceipt]:
        """Reserve, send to the peers and decide; a receipt per request (reserved = still in flight).

        Concurrent callers are batched together (``GroupCommit``); each gets its own receipts.
        """
        return self._group.submit(requests)

    async def transfer_async(self, requests: Sequence[TransferRequest]) -> list[TransferReceipt]:
        """``transfer`` for an async caller: it waits for its receipts without holding a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[TransferReceipt]] = loop.create_future()

        def done(results: list[TransferReceipt], error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, results, error)

        self._group.submit_later(requests, done)
        return await future

    def _send_batch(self, reserved: _Reserved) -> list[TransferReceipt]:
        """A reserved batch's messages to the peers; its receipts with the peers' answers applied."""
        receipts, messages = reserved
        if messages:
            sent = {r.transfer_id: r for r in self.delivery.send_messages(messages)}
            receipts = [sent.get(r.transfer_id, r) for r in receipts]
        return receipts

    def link(self, peer: str) -> LinkReport:
        return self.links.link(peer, self.peer(peer))

    def balance(self, member_id: str) -> dict[str, Any]:
        account = member_account(member_id)
        balance = self.ledger.balance(account)
        if balance is None:
            raise PointsError("no points account for this member at this node")
        with self.ledger.reading() as conn:
            lots = point_lots.lots_of(conn, account)
        return {
            "available": balance.available,
            "posted": balance.posted,
            "pending_debits": balance.debits_pending,
            "pending_credits": balance.credits_pending,
            "expiring": [{"points": lot.points, "expires_at": _iso(lot.expires_at_us)} for lot in lots],
        }

    def expire_points(self) -> int:
        """Move every lot whose expiry passed to the expiry account; returns the points expired."""
        with self.ledger.transaction() as tx:
            return point_lots.expire_due(tx)

    def history(self, member_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        account = member_account(member_id)
        rows = self.ledger.history(account, limit=limit)
        return [
            {
                "transfer": r["id"],
                "kind": r["kind"],
                "code": r["code"],
                "amount": r["amount"] if r["credit_account"] == account else -r["amount"],
                "at": _iso(r["at_us"]),
            }
            for r in rows
        ]

    def status(self) -> dict[str, int]:
        """Cheap counts: transfers by role and state (``source_reserved``: the reserve messages
        waiting for the peer's answer), and ``outbox``, the rows of the outbox: posts and voids
        waiting for the peer's acknowledgement (and, in a database written before reserves left the
        outbox, its queued reserve rows until the pump clears them). Nothing waits to be sent when
        ``outbox`` and ``source_reserved`` are both zero."""
        rows, outbox = TABLES["points_interchange"], TABLES["points_outbox"]
        query = select(rows.c.role, rows.c.state, func.count()).group_by(rows.c.role, rows.c.state)
        with self.ledger.reading() as conn:
            counts = {f"{role}_{state}": int(n) for role, state, n in conn.execute(query)}
            counts["outbox"] = int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())
        for transport in self.faults.values():
            for fault, n in transport.injected.items():  # "drop_request", "decisions:delay_reply"…
                name = "faults_" + fault.replace(":", "_")
                counts[name] = counts.get(name, 0) + n
        return counts

    def recover(self) -> RecoveryReport:
        report = self.delivery.recover(in_doubt_after_s=0.0)
        self._housekeeping()
        return report

    def _housekeeping(self) -> None:
        """What the periodic pass does besides recovery: expire lapsed points, forward audit events."""
        self.expire_points()
        self.audit.drain()

    def settle(self, peer: str, start: datetime, end: datetime) -> dict[str, Any]:
        self.recover()
        return self.settlements.settle(peer, self.peer(peer), start, end, coordinator=self._coordinator_post)

    def _coordinator_post(self, totals: dict[str, Any]) -> None:
        if self._report_totals is not None:
            self._report_totals(totals)
            return
        if self.settings.coordinator_url is None:
            return
        url = f"{self.settings.coordinator_url}/api/v1/points/settlements"
        try:
            reply = httpx.post(url, json=totals, timeout=10)
        except httpx.HTTPError as err:
            raise PeerError(f"coordinator unreachable ({type(err).__name__})") from err
        if reply.status_code >= 400:
            raise PeerError(f"the coordinator refused the settlement totals (HTTP {reply.status_code})")

    def start(self) -> None:
        self.delivery.recover(in_doubt_after_s=self.settings.in_doubt_after_s)
        self.delivery.start(
            recovery_every_s=self.settings.recovery_every_s,
            in_doubt_after_s=self.settings.in_doubt_after_s,
            periodic=self._housekeeping,
        )

    def stop_sending(self) -> None:
        """Stop the outbox pump and close the connections to peers; the ledger stays open.

        A node closes its own connections before its peers' servers stop, so those servers find no
        kept-alive connection to wait for (or to cancel) at shutdown.
        """
        self.delivery.stop()
        for client in self.peers.values():
            client.http.close()

    def close(self) -> None:
        self.stop_sending()
        self.audit.drain()
        if self._audit_log is not None:
            self._audit_log.close()
        self.links.engine.close()
        self.ledger.close()


def _settle(future: asyncio.Future[Any], results: Any, error: BaseException | None) -> None:
    if future.done():  # the waiting request was cancelled (its client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(results)


def _iso(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1_000_000, UTC).isoformat()
