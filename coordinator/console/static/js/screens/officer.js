// Data officer: the approvals inbox (with the diff against what this officer last approved), signing
// decisions with the officer's own key, and the partner's privacy budget over the year.
import { api } from "../api.js";
import { budgetBars, lineChart } from "../charts.js";
import { announce, badge, field, h, mount, table } from "../dom.js";
import { formatDate, formatNumber, t } from "../i18n.js";
import { describe, screen } from "../main.js";
import { decisionStatement, importOfficerKey, signStatement } from "../signing.js";

export async function inbox() {
  const me = screen.me();
  const pending = await api.get(`/policies?pending_for=${encodeURIComponent(me.organisation)}`);
  mount(h("h1", {}, t("inbox.title"), " ", badge(t("inbox.pending", { n: formatNumber(pending.length) }), pending.length ? "warn" : "ok")),
    table("inbox.caption", [
      { label: "policy.id", render: (p) => h("a", { href: `#/policy/${encodeURIComponent(p.policy_id)}/${p.version}` }, p.policy_id) },
      { label: "policy.version", num: true, key: "version" },
      { label: "policy.drafted", render: (p) => formatDate(p.drafted_at) },
      { label: "policy.partners", render: (p) => p.partners.join(", ") },
    ], pending));
}

function lastApprovedVersion(versions, org, current) {
  const approved = versions.filter((v) => v.version < current && v.approvals && v.approvals[org] === "approved");
  return approved.length ? Math.max(...approved.map((v) => v.version)) : null;
}

function diffView(diff) {
  if (!diff) return h("p", { class: "note" }, t("policy.firstApproval"));
  return table("policy.diffCaption", [
    { label: "policy.field", key: "path" },
    { label: "policy.before", render: (c) => h("span", { class: "diff-del" }, JSON.stringify(c.before)) },
    { label: "policy.after", render: (c) => h("span", { class: "diff-add" }, JSON.stringify(c.after)) },
  ], diff.changes);
}

function summaryOf(document, organisation) {
  const d = document || {};
  const privacy = d.privacy || {};
  const columns = Object.entries(d.columns || {}).map(([table, names]) => `${table}: ${names.join(", ")}`);
  return h("dl", {},
    h("dt", {}, t("policy.purpose")), h("dd", {}, String(d.purpose ?? "—")),
    h("dt", {}, t("policy.epsilon")), h("dd", {}, privacy.epsilon === undefined ? "—" : `ε ${formatNumber(privacy.epsilon, 2)}, δ ${privacy.delta}`),
    h("dt", {}, t("policy.categories")), h("dd", {}, columns.join("; ") || "—"),
    h("dt", {}, t("policy.regions")), h("dd", {}, (d.regions || []).join(", ") || "—"),
    h("dt", {}, t("policy.partners")), h("dd", {}, (d.partners || []).map((p) => (p === organisation ? `${p} ★` : p)).join(", ")));
}

export async function policyDetail(policyId, versionText) {
  const me = screen.me();
  const version = Number(versionText);
  const path = `/policies/${encodeURIComponent(policyId)}`;
  // One request for every version's approvals (not one per version: a policy may have many).
  const [current, policy, datasets] = await Promise.all([api.get(`${path}/versions/${version}`), api.get(path), api.get("/datasets")]);
  const since = lastApprovedVersion(policy.versions || [], me.organisation, version);
  const diff = since === null ? null : await api.get(`${path}/diff?from=${since}&to=${version}`);
  const mine = datasets.filter((d) => d.partner_id === me.organisation);
  const keyInput = h("input", { type: "file", accept: ".key,.pem" });
  const reason = h("textarea", { rows: 2 });
  const result = h("p", { role: "alert" });
  const decide = (decision) => async () => {
    try {
      if (!keyInput.files.length) { result.textContent = t("policy.chooseKey"); return; }
      const key = await importOfficerKey(keyInput.files[0]);
      const statement = decisionStatement({ policyId, version, hash: current.hash, partnerId: me.organisation, decision });
      const signature = await signStatement(key, statement);
      await api.post(`${path}/versions/${version}/decisions`, { statement, signature, reason: reason.value || undefined });
      result.textContent = t(decision === "approved" ? "policy.approvedDone" : "policy.rejectedDone");
      announce(result.textContent);
    } catch (err) {
      result.textContent = err.message === "key-format" ? t("policy.keyFormat") : describe(err);
    }
  };
  mount(h("h1", {}, t("policy.title", { id: policyId, version })),
    h("p", {}, t("policy.hash"), " ", h("code", {}, current.hash)),
    h("section", { class: "panel" }, h("h2", {}, t("policy.summary")), summaryOf(current.document, me.organisation)),
    h("section", { class: "panel" }, h("h2", {}, since === null ? t("policy.changes") : t("policy.changesSince", { version: since })), diffView(diff)),
    h("section", { class: "panel" }, h("h2", {}, t("policy.touches")),
      table("policy.datasetsCaption", [{ label: "datasets.name", key: "name" },
        { label: "datasets.table", render: (d) => Object.keys(d.tables).join(", ") }], mine)),
    h("section", { class: "panel" }, h("h2", {}, t("policy.decide")),
      h("p", { class: "note" }, t("policy.keyStaysHere")),
      field("policy.keyFile", keyInput), field("policy.reason", reason),
      h("button", { type: "button", onclick: decide("approved") }, t("policy.approve")), " ",
      h("button", { type: "button", class: "secondary", onclick: decide("rejected") }, t("policy.reject")), result));
}

// ε used so far in the year, month by month, for each purpose and dataset, against the yearly cap.
function usageChart(usage) {
  const cumulative = (months) => months.reduce((acc, v, i) => [...acc, [i + 1, (i ? acc[i - 1][1] : 0) + v]], []);
  const series = usage.series.map((s) => ({ name: `${s.purpose} · ${s.dataset}`, points: cumulative(s.months) }));
  series.push({ name: t("budget.cap"), points: [[1, usage.epsilon_cap], [12, usage.epsilon_cap]] });
  const top = Math.max(usage.epsilon_cap, ...series.flatMap((s) => s.points.map((p) => p[1])));
  return lineChart({ label: t("budget.usageChart", { year: usage.year }), series, xLabel: t("budget.month"), yLabel: "ε",
    domain: [1, 12, 0, top], width: 640, height: 320 });
}

export async function budget() {
  const me = screen.me();
  const partner = encodeURIComponent(me.organisation);
  const [rows, usage] = await Promise.all([api.get(`/budgets?partner=${partner}`), api.get(`/budgets/${partner}/usage`)]);
  const used = (r) => r.epsilon_cap - r.epsilon_remaining;
  const bars = rows.map((r) => ({ label: `${r.partner_id} ${r.year}`, used: used(r), cap: r.epsilon_cap }));
  mount(h("h1", {}, t("budget.title")),
    bars.length ? budgetBars({ label: t("budget.chart"), rows: bars }) : h("p", { class: "note" }, t("common.none")),
    table("budget.caption", [
      { label: "budget.year", key: "year" },
      { label: "budget.spent", num: true, render: (r) => formatNumber(used(r), 2) },
      { label: "budget.cap", num: true, render: (r) => formatNumber(r.epsilon_cap, 2) },
    ], rows),
    h("h2", {}, t("budget.byPurpose", { year: usage.year })),
    usage.series.length ? usageChart(usage) : null,
    table("budget.byPurposeCaption", [
      { label: "policy.purpose", key: "purpose" },
      { label: "datasets.name", key: "dataset" },
      { label: "budget.jobs", num: true, render: (s) => formatNumber(s.jobs) },
      { label: "budget.spent", num: true, render: (s) => formatNumber(s.epsilon, 2) },
    ], usage.series));
}
