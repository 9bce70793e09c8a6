// Analyst: launch a job (refusals explained before submission), watch it round by round, read model
// cards (ROC, calibration, fairness with the 15-point alarm) and compare two runs.
import { api } from "../api.js";
import { lineChart } from "../charts.js";
import { announce, badge, field, h, mount, pager, table } from "../dom.js";
import { formatDate, formatNumber, t } from "../i18n.js";
import { describe, screen } from "../main.js";

const STATE_KIND = { finished: "ok", failed: "bad", stopped: "bad", running: "warn", queued: "warn" };

const PAGE = 50; // rows per page: lists stay quick however many jobs the federation has run
const COMPARE_CHOICES = 200; // the newest models offered for a comparison

function stateBadge(state) { return badge(t(`state.${state}`), STATE_KIND[state]); }

export async function jobs() {
  const state = h("select", {}, h("option", { value: "" }, t("common.any")),
    ["submitted", "awaiting_approval", "queued", "running", "finished", "failed", "stopped"].map((s) => h("option", { value: s }, t(`state.${s}`))));
  const task = h("select", {}, h("option", { value: "" }, t("common.any")),
    ["churn", "propensity"].map((s) => h("option", { value: s }, t(`task.${s}`))));
  const results = h("div");
  let offset = 0;
  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (state.value) query.set("state", state.value);
    if (task.value) query.set("task", task.value);
    const { rows, total } = await api.page(`/jobs?${query}`);
    const turn = async (by) => { offset = Math.max(0, offset + by); await load(); };
    results.replaceChildren(pager({ offset, shown: rows.length, total, size: PAGE, turn, fmt: formatNumber }), table("jobs.caption", [
      { label: "jobs.id", render: (j) => h("a", { href: `#/job/${encodeURIComponent(j.job_id)}` }, j.job_id) },
      { label: "jobs.task", render: (j) => t(`task.${j.task}`) },
      { label: "jobs.state", render: (j) => stateBadge(j.state) },
      { label: "jobs.submitted", render: (j) => formatDate(j.submitted_at) },
      { label: "jobs.model", render: (j) => (j.model_id ? h("a", { href: `#/model/${encodeURIComponent(j.model_id)}` }, j.model_id) : "—") },
    ], rows));
  };
  const filter = async () => { offset = 0; await load(); };
  state.addEventListener("change", filter);
  task.addEventListener("change", filter);
  mount(h("h1", {}, t("jobs.title")), h("div", { class: "panel" }, field("jobs.filterState", state), field("jobs.filterTask", task)), results);
  await load();
}

// Each partner's consented members for the policy's purpose, as its node counted them (rounded
// down to 10, withheld below the minimum group): null where the node has not reported yet.
function consentOf(counts, partner) {
  const row = counts.find((c) => c.partner_id === partner);
  return row === undefined ? null : row;
}

function consentTable(policy, counts) {
  return table("launch.consentCaption", [
    { label: "launch.partner", render: (p) => p },
    { label: "launch.consented", num: true, render: (p) => {
      const row = consentOf(counts, p);
      if (!row) return t("launch.consentUnreported");
      return row.members === null ? t("launch.consentTooFew") : t("launch.consentAbout", { n: formatNumber(row.members) });
    } },
    { label: "launch.countedAt", render: (p) => { const row = consentOf(counts, p); return row ? formatDate(row.counted_at) : "—"; } },
  ], policy.partners);
}

// What would refuse this job, checked before it is submitted (the API and the nodes check again).
async function refusalsFor(policy, epsilon) {
  const reasons = [];
  const missing = policy.partners.filter((p) => policy.approvals[p] !== "approved");
  if (missing.length) reasons.push(t("launch.missingApproval", { partners: missing.join(", ") }));
  const version = await api.get(`/policies/${encodeURIComponent(policy.policy_id)}/versions/${policy.version}`);
  const purpose = (version.document || {}).purpose;
  const counts = purpose ? await api.get(`/consent-counts?purpose=${encodeURIComponent(purpose)}`) : [];
  const none = policy.partners.filter((p) => { const row = consentOf(counts, p); return row && !row.members; });
  if (none.length) reasons.push(t("launch.noConsent", { partners: none.join(", "), purpose }));
  const [nodes, budgets] = await Promise.all([api.get("/nodes"), api.get("/budgets")]);
  const offline = policy.partners.filter((p) => !nodes.some((n) => n.partner_id === p && n.online));
  if (offline.length) reasons.push(t("launch.offline", { partners: offline.join(", ") }));
  const year = new Date().getUTCFullYear();
  for (const b of budgets) {
    if (policy.partners.includes(b.partner_id) && b.year === year && epsilon > b.epsilon_remaining) {
      reasons.push(t("launch.budget", { partner: b.partner_id, remaining: formatNumber(b.epsilon_remaining, 2) }));
    }
  }
  return { reasons, consent: consentTable(policy, counts) };
}

export async function launch() {
  const policies = await api.get("/policies");
  const policy = h("select", { required: true }, policies.map((p) => h("option", { value: `${p.policy_id}/${p.version}` }, `${p.policy_id} v${p.version}`)));
  const task = h("select", {}, ["churn", "propensity"].map((s) => h("option", { value: s }, t(`task.${s}`))));
  const model = h("select", {}, ["logreg", "mlp"].map((s) => h("option", { value: s }, t(`model.${s}`))));
  const epsilon = h("input", { type: "number", min: "0.1", max: "100", step: "0.1", value: "3" });
  const delta = h("input", { type: "number", min: "1e-9", max: "0.001", step: "any", value: "0.00001" });
  const rounds = h("input", { type: "number", min: "1", max: "1000", step: "1", value: "8" });
  const checks = h("div", { role: "status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, t("launch.submit"));
  const chosen = () => policies.find((p) => `${p.policy_id}/${p.version}` === policy.value);
  const review = async () => {
    const p = chosen();
    if (!p) { checks.replaceChildren(h("p", { class: "error" }, t("launch.noPolicy"))); submit.disabled = true; return; }
    const { reasons, consent } = await refusalsFor(p, Number(epsilon.value));
    submit.disabled = reasons.length > 0;
    checks.replaceChildren(reasons.length
      ? h("ul", { class: "error" }, reasons.map((r) => h("li", {}, r)))
      : h("p", {}, badge(t("launch.ready"), "ok"), " ", t("launch.partners", { partners: p.partners.join(", ") })), consent);
  };
  for (const control of [policy, epsilon]) control.addEventListener("change", review);
  const form = h("form", { class: "panel", onsubmit: async (event) => {
    event.preventDefault();
    const p = chosen();
    try {
      const created = await api.post("/jobs", { task: task.value, model: model.value, epsilon: Number(epsilon.value),
        delta: Number(delta.value), rounds: Number(rounds.value), policy_id: p.policy_id, policy_version: p.version, policy_hash: p.hash });
      announce(t("launch.submitted", { id: created.job_id }));
      location.hash = `#/job/${encodeURIComponent(created.job_id)}`;
    } catch (err) { checks.replaceChildren(h("p", { class: "error", role: "alert" }, describe(err))); }
  } }, field("launch.policy", policy), field("launch.task", task), field("launch.model", model),
  field("launch.epsilon", epsilon, "launch.epsilonHint"), field("launch.delta", delta), field("launch.rounds", rounds), checks, submit);
  mount(h("h1", {}, t("launch.title")), form);
  await review();
}

// The ServerApp reports the pooled validation AUC on evaluation rounds (coordinator_reports).
function roundAuc(round) { return round.metrics ? round.metrics.validation_auc : undefined; }

function progressCharts(job) {
  const rounds = job.rounds || [];
  const auc = rounds.filter((r) => roundAuc(r) !== undefined).map((r) => [r.round, roundAuc(r)]);
  const eps = rounds.map((r) => [r.round, r.epsilon_spent]);
  const last = Math.max(1, ...rounds.map((r) => r.round));
  return h("div", { class: "grid" },
    lineChart({ label: t("job.aucChart"), series: [{ name: t("job.pooledAuc"), points: auc }], xLabel: t("job.round"), yLabel: "AUC", domain: [0, last, 0.5, 1] }),
    lineChart({ label: t("job.epsChart"), series: [{ name: "ε", points: eps }], xLabel: t("job.round"), yLabel: "ε",
      domain: [0, last, 0, Math.max(1, ...eps.map((p) => p[1]))] }));
}

export async function jobDetail(jobId) {
  const body = h("div");
  const render = async () => {
    const job = await api.get(`/jobs/${encodeURIComponent(jobId)}`);
    const stop = ["queued", "running", "awaiting_approval", "submitted"].includes(job.state)
      ? h("button", { type: "button", class: "secondary", onclick: async () => {
        try { await api.post(`/jobs/${encodeURIComponent(jobId)}/stop`); announce(t("job.stopping")); } catch (err) { announce(describe(err)); }
      } }, t("job.stop")) : null;
    body.replaceChildren(
      h("p", {}, t("jobs.state"), ": ", stateBadge(job.state), job.reason ? h("span", { class: "error" }, ` ${job.reason}`) : null, " ", stop),
      job.refusals && job.refusals.length ? h("div", { class: "alarm", role: "alert" }, job.refusals.map((r) => h("p", {}, t("job.refusedBy", { partner: r.partner_id, reason: r.reason })))) : null,
      table("job.roundsCaption", [
        { label: "job.round", num: true, key: "round" },
        { label: "job.nodesAnswered", num: true, key: "nodes_answered" },
        { label: "job.pooledAuc", num: true, render: (r) => formatNumber(roundAuc(r), 3) },
        { label: "job.epsilonSpent", num: true, render: (r) => formatNumber(r.epsilon_spent, 3) },
      ], job.rounds || []),
      progressCharts(job),
      job.model_id ? h("p", {}, h("a", { href: `#/model/${encodeURIComponent(job.model_id)}` }, t("job.openModel"))) : null);
  };
  mount(h("h1", {}, t("job.title", { id: jobId })), body);
  await render();
  screen.every(2000, render);
}

function rocSeries(card, name) {
  const roc = card.metrics && card.metrics.roc_curve;
  return roc ? { name, points: roc.fpr.map((x, i) => [x, roc.tpr[i]]) } : null;
}

// The card's ten calibration bins; a bin under k held-out members is withheld (null) and not drawn.
function calibrationSeries(card, name) {
  const bins = card.metrics && card.metrics.calibration;
  if (!bins) return null;
  const points = bins.mean_predicted.map((x, i) => [x, bins.fraction_positive[i]]).filter(([x, y]) => x !== null && y !== null);
  return points.length ? { name, points } : null;
}

// The alarm is the card's own verdict (the models' fairness rule: a gap above 15 points, clear of
// the groups' noise); the console draws it, it does not re-derive it.
function fairnessView(card) {
  const gaps = (card.metrics && card.metrics.fairness_gaps) || {};
  if ("not_reported" in gaps) return h("p", { class: "note" }, t("model.fairnessNotReported", { why: gaps.not_reported }));
  return h("div", {}, Object.entries(gaps).map(([attribute, gap]) => h("div", { class: gap.warning ? "alarm" : "panel", role: gap.warning ? "alert" : undefined },
    h("h3", {}, attribute, " ", gap.warning ? badge(t("model.fairnessAlarm"), "bad") : badge(t("model.fairnessOk"), "ok")),
    gap.gap_within_noise ? h("p", { class: "note" }, t("model.gapWithinNoise")) : null,
    (gap.too_small_to_report || []).length ? h("p", { class: "note" }, t("model.groupsTooSmall", { groups: gap.too_small_to_report.join(", ") })) : null,
    table("model.fairnessCaption", [
      { label: "model.group", key: "group" },
      { label: "model.auc", num: true, render: (r) => formatNumber(r.auc, 3) },
      { label: "model.positiveRate", num: true, render: (r) => formatNumber(r.rate, 3) },
    ], [...new Set([...Object.keys(gap.positive_rate_by_group), ...Object.keys(gap.auc_by_group)])].map((group) => ({ group, auc: gap.auc_by_group[group], rate: gap.positive_rate_by_group[group] }))),
    h("p", {}, t("model.gaps", { auc: gapPoints(gap.auc_gap), rate: gapPoints(gap.positive_rate_gap) })),
    // A gap the card could not measure is null with the card's reason: shown as "—" and the reason, never 0.
    (gap.not_computable || []).map((why) => h("p", { class: "note" }, why)))));
}

function gapPoints(value) {
  return value === null || value === undefined ? formatNumber(null) : formatNumber(value * 100, 1);
}

function cardCharts(cards) {
  const roc = cards.map(([name, card]) => rocSeries(card, name)).filter(Boolean);
  const calibration = cards.map(([name, card]) => calibrationSeries(card, name)).filter(Boolean);
  return h("div", { class: "grid" },
    roc.length ? lineChart({ label: t("model.rocChart"), series: roc, xLabel: t("model.fpr"), yLabel: t("model.tpr"), diagonal: true }) : h("p", { class: "note" }, t("model.noRoc")),
    calibration.length ? lineChart({ label: t("model.calibrationChart"), series: calibration, xLabel: t("model.predicted"), yLabel: t("model.observed"), diagonal: true }) : h("p", { class: "note" }, t("model.noCalibration")));
}

export async function models() {
  const results = h("div");
  let offset = 0;
  const load = async () => {
    const { rows, total } = await api.page(`/models?limit=${PAGE}&offset=${offset}`);
    const turn = async (by) => { offset = Math.max(0, offset + by); await load(); };
    results.replaceChildren(pager({ offset, shown: rows.length, total, size: PAGE, turn, fmt: formatNumber }), modelTable(rows));
  };
  mount(h("h1", {}, t("models.title")), results);
  await load();
}

function modelTable(rows) {
  return table("models.caption", [
    { label: "models.id", render: (m) => h("a", { href: `#/model/${encodeURIComponent(m.model_id)}` }, m.model_id) },
    { label: "jobs.task", render: (m) => t(`task.${m.task}`) },
    { label: "models.job", render: (m) => h("a", { href: `#/job/${encodeURIComponent(m.job_id)}` }, m.job_id) },
    { label: "models.published", render: (m) => formatDate(m.published_at) },
    { label: "models.artefact", render: (m) => h("code", {}, m.artefact_sha256.slice(0, 16)) },
  ], rows);
}

function cardSummary(card) {
  const m = card.metrics || {};
  return h("dl", {},
    h("dt", {}, t("model.auc")), h("dd", {}, formatNumber(m.auc, 3)),
    h("dt", {}, t("model.prAuc")), h("dd", {}, formatNumber(m.pr_auc, 3)),
    h("dt", {}, t("model.epsilon")), h("dd", {}, formatNumber(card.target_epsilon, 2)),
    h("dt", {}, t("model.policy")), h("dd", {}, card.policy_id ? `${card.policy_id} v${card.policy_version}` : "—"),
    h("dt", {}, t("model.nodes")), h("dd", {}, (card.nodes || []).map((n) => n.partner_id).join(", ")));
}

export async function modelDetail(modelId) {
  const model = await api.get(`/models/${encodeURIComponent(modelId)}`);
  const card = model.card || model;
  mount(h("h1", {}, t("model.title", { id: modelId })), cardSummary(card), cardCharts([[modelId, card]]),
    h("h2", {}, t("model.fairness")), fairnessView(card));
}

export async function compare() {
  const rows = await api.get(`/models?limit=${COMPARE_CHOICES}`);
  const a = h("select", {}, rows.map((m) => h("option", { value: m.model_id }, m.model_id)));
  const b = h("select", {}, rows.map((m) => h("option", { value: m.model_id }, m.model_id)));
  if (rows.length > 1) b.value = rows[1].model_id;
  const out = h("div");
  const show = async () => {
    const [ca, cb] = await Promise.all([api.get(`/models/${encodeURIComponent(a.value)}`), api.get(`/models/${encodeURIComponent(b.value)}`)]);
    const cards = [[a.value, ca.card || ca], [b.value, cb.card || cb]];
    out.replaceChildren(h("div", { class: "grid" }, cards.map(([name, card]) => h("section", { class: "panel" }, h("h2", {}, name), cardSummary(card)))), cardCharts(cards));
  };
  mount(h("h1", {}, t("compare.title")), h("div", { class: "panel" }, field("compare.first", a), field("compare.second", b),
    h("button", { type: "button", onclick: show }, t("compare.show"))), out);
  if (rows.length) await show();
}
