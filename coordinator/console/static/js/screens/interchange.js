// Points interchange and PSI as the coordinator sees them: agreements awaiting the officers'
// signatures (signed in this page with the officer's own key), the nodes' settlement totals with
// mismatches flagged, and PSI run counts. Everything comes from the public /api/v1.
import { api } from "../api.js";
import { announce, badge, field, h, mount, table } from "../dom.js";
import { formatDate, formatMoney, formatNumber, t } from "../i18n.js";
import { describe, screen } from "../main.js";
import { importAgreementKey, signAgreement } from "../agreement_signing.js";

const AGREEMENT_STATUS = { awaiting_signature: ["agreement.awaiting", "warn"], signed: ["agreement.signed", "ok"] };
const SETTLEMENT_STATUS = {
  reported: ["settlement.reported", ""], matched: ["settlement.matched", "ok"], mismatch: ["settlement.mismatch", "bad"],
};
const RUN_STATUS = {
  completed: ["psiRun.completed", "ok"], refused: ["psiRun.refused", "warn"],
  aborted: ["psiRun.aborted", "bad"], expired: ["psiRun.expired", ""],
};

function statusBadge(map, value) {
  const [key, kind] = map[value] || [null, ""];
  return badge(key ? t(key) : value, kind);
}

export async function agreements() {
  const me = screen.me();
  const [pending, all] = await Promise.all([api.get("/points/agreements?pending=true"), api.get("/points/agreements")]);
  const mine = pending.filter((a) => a.awaiting.includes(me.organisation));
  const columns = [
    { label: "agreement.id", render: (a) => h("a", { href: `#/agreement/${a.agreement_hash}` }, a.agreement_id) },
    { label: "agreement.partners", render: (a) => a.partners.join(" ↔ ") },
    { label: "agreement.status", render: (a) => statusBadge(AGREEMENT_STATUS, a.status) },
    { label: "agreement.awaitingFrom", render: (a) => a.awaiting.join(", ") || "—" },
    { label: "agreement.valid", render: (a) => `${formatDate(a.valid_from)} – ${formatDate(a.valid_until)}` },
    { label: "agreement.drafted", render: (a) => formatDate(a.drafted_at) },
  ];
  mount(h("h1", {}, t("agreement.title"), " ",
    badge(t("agreement.pendingCount", { n: formatNumber(mine.length) }), mine.length ? "warn" : "ok")),
  h("p", { class: "note" }, t("agreement.explain")),
  table("agreement.pendingCaption", columns, pending),
  table("agreement.allCaption", columns, all));
}

function termsTable(document) {
  return table("agreement.termsCaption", [
    { label: "agreement.direction", render: (d) => `${d.source} → ${d.destination}` },
    { label: "agreement.rate", render: (d) => `${formatNumber(d.block_in)} → ${formatNumber(d.block_out)}` },
    { label: "agreement.perTransfer", render: (d) => `${formatNumber(d.min_points)} – ${formatNumber(d.max_points)}` },
    { label: "agreement.memberCaps", render: (d) => `${formatNumber(d.member_daily_cap)} / ${formatNumber(d.member_monthly_cap)}` },
    { label: "agreement.partnerDailyCap", num: true, render: (d) => formatNumber(d.partner_daily_cap) },
    { label: "agreement.fee", render: (d) => `${d.fee_per_point} (≤ ${formatNumber(d.fee_ceiling)})` },
    { label: "agreement.price", num: true, render: (d) => formatMoney(Number(d.settlement_price), document.currency) },
  ], document.terms || []);
}

function signaturesTable(signatures) {
  return table("agreement.signaturesCaption", [
    { label: "agreement.partner", key: "partner" },
    { label: "agreement.officer", key: "officer" },
    { label: "agreement.signedAt", render: (s) => formatDate(s.signed_at) },
    { label: "agreement.verified", render: (s) => badge(t(s.verified ? "agreement.verifiedYes" : "agreement.verifiedNo"), s.verified ? "ok" : "bad") },
  ], signatures || []);
}

function signPanel(agreement, me, reload) {
  const keyInput = h("input", { type: "file", accept: ".key,.pem" });
  const result = h("p", { role: "alert" });
  const sign = async () => {
    try {
      if (!keyInput.files.length) { result.textContent = t("policy.chooseKey"); return; }
      const key = await importAgreementKey(keyInput.files[0]);
      const body = await signAgreement(key, { hash: agreement.agreement_hash, partner: me.organisation, officer: me.name });
      await api.post(`/points/agreements/${agreement.agreement_hash}/signatures`, body);
      announce(t("agreement.signedDone"));
      await reload();
    } catch (err) {
      result.textContent = err.message === "key-format" ? t("policy.keyFormat") : describe(err);
    }
  };
  return h("section", { class: "panel" }, h("h2", {}, t("agreement.sign")),
    h("p", { class: "note" }, t("agreement.signExplain")),
    field("policy.keyFile", keyInput, "agreement.keyHint"),
    h("button", { type: "button", onclick: sign }, t("agreement.signButton")), result);
}

export async function agreementDetail(hash) {
  const me = screen.me();
  const render = async () => {
    const agreement = await api.get(`/points/agreements/${encodeURIComponent(hash)}`);
    const document = agreement.document || {};
    const canSign = me.role === "data_officer" && agreement.awaiting.includes(me.organisation);
    mount(h("h1", {}, t("agreement.detailTitle", { id: agreement.agreement_id })),
      h("p", {}, t("agreement.hash"), " ", h("code", {}, agreement.agreement_hash), " ", statusBadge(AGREEMENT_STATUS, agreement.status)),
      h("section", { class: "panel" }, h("h2", {}, t("agreement.terms")),
        h("dl", {},
          h("dt", {}, t("agreement.partners")), h("dd", {}, agreement.partners.join(" ↔ ")),
          h("dt", {}, t("agreement.valid")), h("dd", {}, `${formatDate(agreement.valid_from)} – ${formatDate(agreement.valid_until)}`),
          h("dt", {}, t("agreement.netting")), h("dd", {}, t("agreement.nettingDays", { n: formatNumber(document.netting_period_days) })),
          h("dt", {}, t("agreement.currency")), h("dd", {}, agreement.currency)),
        termsTable(document)),
      h("section", { class: "panel" }, h("h2", {}, t("agreement.signatures")), signaturesTable(agreement.signatures)),
      canSign ? signPanel(agreement, me, render) : null);
  };
  await render();
}

function directionsCell(row) {
  return h("ul", {}, row.directions.map((d) => h("li", {},
    t("settlement.direction", {
      source: d.source, destination: d.destination, points: formatNumber(d.points),
      credited: formatNumber(d.credited), amount: formatMoney(Number(d.amount), row.currency),
    }))));
}

function netCell(row) {
  if (!row.payer) return t("settlement.even");
  return t("settlement.net", { payer: row.payer, payee: row.payee, amount: formatMoney(Number(row.net_amount), row.currency) });
}

export async function settlements() {
  const render = async () => {
    const rows = await api.get("/points/settlements");
    const mismatches = rows.filter((r) => r.status === "mismatch");
    mount(h("h1", {}, t("settlement.title"), " ",
      badge(t("settlement.mismatchCount", { n: formatNumber(mismatches.length) }), mismatches.length ? "bad" : "ok")),
    h("p", { class: "note" }, t("settlement.totalsOnly")),
    mismatches.length ? h("p", { class: "alarm", role: "alert" }, t("settlement.alarm")) : null,
    table("settlement.caption", [
      { label: "settlement.agreement", key: "agreement_id" },
      { label: "settlement.period", render: (r) => `${formatDate(r.period_start)} – ${formatDate(r.period_end)}` },
      { label: "settlement.reporter", render: (r) => `${r.reporter} (↔ ${r.peer})` },
      { label: "settlement.directions", render: directionsCell },
      { label: "settlement.netHeader", render: netCell },
      { label: "settlement.status", render: (r) => h("span", {}, statusBadge(SETTLEMENT_STATUS, r.status),
        r.differences.length ? h("span", { class: "note" }, " ", r.differences.join(", ")) : null) },
      { label: "settlement.reportedAt", render: (r) => formatDate(r.reported_at) },
    ], rows));
  };
  await render();
  screen.every(10000, render);
}

export async function psiRuns() {
  const rows = await api.get("/psi/runs");
  mount(h("h1", {}, t("psiRun.title")),
    h("p", { class: "note" }, t("psiRun.countsOnly")),
    table("psiRun.caption", [
      { label: "psiRun.when", render: (r) => formatDate(r.ran_at) },
      { label: "psiRun.partners", render: (r) => `${r.partner_id} ↔ ${r.peer}` },
      { label: "psiRun.role", key: "psi_role" },
      { label: "psiRun.purpose", key: "purpose" },
      { label: "psiRun.mode", key: "mode" },
      { label: "psiRun.ownSize", num: true, render: (r) => formatNumber(r.own_set_size) },
      { label: "psiRun.peerSize", num: true, render: (r) => formatNumber(r.peer_set_size) },
      { label: "psiRun.shared", num: true, render: (r) => formatNumber(r.result_cardinality) },
      { label: "psiRun.status", render: (r) => h("span", {}, statusBadge(RUN_STATUS, r.status), r.refusal ? ` (${r.refusal})` : "") },
    ], rows));
}
