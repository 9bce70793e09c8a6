// Data officer: the approvals inbox (with the diff against what this officer last approved), signing
// decisions with the officer's own key, and the partner's privacy budget over the year.
import { api } from "../api.js";
import { budgetBars } from "../charts.js";
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

function summaryOf(document) {
  const d = document || {};
  const epsilon = d.epsilon_cap ?? d.epsilon ?? (d.privacy && d.privacy.epsilon);
  return h("dl", {},
    h("dt", {}, t("policy.purpose")), h("dd", {}, String(d.purpose ?? "—")),
    h("dt", {}, t("policy.epsilon")), h("dd", {}, epsilon === undefined ? "—" : formatNumber(Number(epsilon), 2)),
    h("dt", {}, t("policy.categories")), h("dd", {}, (d.data_categories || []).join(", ") || "—"),
    h("dt", {}, t("policy.regions")), h("dd", {}, (d.regions || []).join(", ") || "—"));
}

export async function policyDetail(policyId, versionText) {
  const me = screen.me();
  const version = Number(versionText);
  const path = `/policies/${encodeURIComponent(policyId)}`;
  const [current, all, datasets] = await Promise.all([
    api.get(`${path}/versions/${version}`), api.get(path), api.get("/datasets"),
  ]);
  const versions = all.versions || [];
  const since = lastApprovedVersion(versions, me.organisation, version);
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
    h("section", { class: "panel" }, h("h2", {}, t("policy.summary")), summaryOf(current.document)),
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

export async function budget() {
  const me = screen.me();
  const rows = await api.get(`/budgets?partner=${encodeURIComponent(me.organisation)}`);
  const bars = rows.map((r) => ({ label: `${r.year} ${r.purpose || r.dataset || ""}`.trim(), used: r.spent ?? 0, cap: r.cap ?? r.epsilon_cap ?? 0 }));
  mount(h("h1", {}, t("budget.title")),
    bars.length ? budgetBars({ label: t("budget.chart"), rows: bars }) : h("p", { class: "note" }, t("common.none")),
    table("budget.caption", [
      { label: "budget.year", key: "year" },
      { label: "budget.spent", num: true, render: (r) => formatNumber(r.spent ?? 0, 2) },
      { label: "budget.cap", num: true, render: (r) => formatNumber(r.cap ?? r.epsilon_cap ?? 0, 2) },
    ], rows));
}
