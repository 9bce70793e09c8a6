// Auditor: the lineage graph (filter by partner, job, time), the log's verification status checked in
// this browser against a pinned key and the head the auditor saved, OpenLineage export, anomalies and
// erasures.
import { api } from "../api.js";
import { announce, badge, field, h, mount, table } from "../dom.js";
import { formatDate, formatNumber, t } from "../i18n.js";
import { describe } from "../main.js";
import { verifyConsistency, verifyTreeHead } from "../merkle.js";

const NS = "http://www.w3.org/2000/svg";
const COLUMNS = { dataset: 0, consent_snapshot: 0, partner: 0, policy: 1, approval: 1, budget: 1, job: 2, model: 3 };

function svg(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Datasets and consents on the left, policies and approvals beside the jobs, models on the right.
function graphView(graph) {
  const columns = [[], [], [], []];
  for (const node of graph.nodes) columns[COLUMNS[node.kind] ?? 2].push(node);
  const height = Math.max(120, 40 + 34 * Math.max(...columns.map((c) => c.length)));
  const width = 960, colWidth = width / 4;
  const place = new Map();
  columns.forEach((nodes, c) => nodes.forEach((node, i) => place.set(node.id, [c * colWidth + 10, 30 + i * 34])));
  const root = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": t("lineage.graph") });
  root.appendChild(svg("title", {}, t("lineage.graph")));
  for (const edge of graph.edges) {
    const a = place.get(edge.source), b = place.get(edge.target);
    if (a && b) root.appendChild(svg("line", { x1: a[0] + colWidth - 40, y1: a[1], x2: b[0], y2: b[1], stroke: "#9aa3ad" }));
  }
  for (const node of graph.nodes) {
    const [x, y] = place.get(node.id);
    root.appendChild(svg("rect", { x, y: y - 12, width: colWidth - 40, height: 24, rx: 4, fill: "#eef1f5", stroke: "#0b5cad" }));
    root.appendChild(svg("text", { x: x + 6, y: y + 4 }, `${t(`lineage.kind.${node.kind}`)}: ${String(node.label).slice(0, 26)}`));
  }
  return root;
}

export async function lineage() {
  const partner = h("input", { type: "text" }), job = h("input", { type: "text" });
  const since = h("input", { type: "date" }), until = h("input", { type: "date" });
  const out = h("div");
  const load = async (event) => {
    if (event) event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, control] of [["partner", partner], ["job", job], ["since", since], ["until", until]]) if (control.value) query.set(key, control.value);
    try {
      const graph = await api.get(`/audit/lineage?${query}`);
      out.replaceChildren(graphView(graph), table("lineage.edgesCaption", [
        { label: "lineage.from", render: (e) => e.source }, { label: "lineage.relation", render: (e) => e.relation },
        { label: "lineage.to", render: (e) => e.target }], graph.edges));
    } catch (err) { out.replaceChildren(h("p", { class: "error", role: "alert" }, describe(err))); }
  };
  mount(h("h1", {}, t("lineage.title")),
    h("form", { class: "panel", onsubmit: load }, field("lineage.partner", partner), field("lineage.job", job),
      field("lineage.since", since), field("lineage.until", until), h("button", { type: "submit" }, t("lineage.filter"))), out);
  await load();
}

async function download(path, name) {
  const data = await api.get(path);
  const link = h("a", { href: URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" })), download: name });
  document.body.appendChild(link);
  link.click();
  link.remove();
}

async function verification(head, keyHex, saved) {
  const lines = [];
  const signed = await verifyTreeHead(head, keyHex).catch(() => false);
  lines.push([t("log.signature"), signed]);
  if (saved) {
    let consistent = false;
    if (saved.tree_size <= head.tree_size) {
      const proof = await api.get(`/audit/consistency?first=${saved.tree_size}&second=${head.tree_size}`);
      consistent = await verifyConsistency(saved.tree_size, head.tree_size, saved.root_hash, head.root_hash, proof.proof);
    }
    lines.push([t("log.consistency", { size: formatNumber(saved.tree_size) }), consistent]);
  }
  return lines;
}

export async function logStatus() {
  const head = await api.get("/audit/head");
  const key = h("input", { type: "text", value: localStorage.getItem("loyalfed.auditKey") || "", spellcheck: "false" });
  const savedFile = h("input", { type: "file", accept: ".json" });
  const result = h("div", { role: "status", "aria-live": "polite" });
  const saved = () => JSON.parse(localStorage.getItem("loyalfed.savedHead") || "null");
  const check = async () => {
    localStorage.setItem("loyalfed.auditKey", key.value.trim());
    if (savedFile.files.length) localStorage.setItem("loyalfed.savedHead", await savedFile.files[0].text());
    try {
      const lines = await verification(head, key.value.trim(), saved());
      result.replaceChildren(h("ul", {}, lines.map(([label, ok]) => h("li", {}, badge(t(ok ? "log.pass" : "log.fail"), ok ? "ok" : "bad"), " ", label))));
    } catch (err) { result.replaceChildren(h("p", { class: "error", role: "alert" }, describe(err))); }
  };
  const [anomalies, erasures] = await Promise.all([api.get("/audit/anomalies"), api.get("/audit/events?event_type=consent.erased")]);
  mount(h("h1", {}, t("log.title")),
    h("section", { class: "panel" }, h("dl", {},
      h("dt", {}, t("log.size")), h("dd", {}, formatNumber(head.tree_size)),
      h("dt", {}, t("log.root")), h("dd", {}, h("code", {}, head.root_hash)),
      h("dt", {}, t("log.time")), h("dd", {}, formatDate(head.timestamp_ms)))),
    h("section", { class: "panel" }, h("h2", {}, t("log.verify")), h("p", { class: "note" }, t("log.pinnedKeyHint")),
      field("log.publicKey", key), field("log.savedHead", savedFile, "log.savedHeadHint"),
      h("button", { type: "button", onclick: check }, t("log.verifyNow")), " ",
      h("button", { type: "button", class: "secondary", onclick: () => { localStorage.setItem("loyalfed.savedHead", JSON.stringify(head)); announce(t("log.headSaved")); } }, t("log.saveHead")), result),
    h("section", { class: "panel" }, h("h2", {}, t("log.export")),
      h("button", { type: "button", onclick: () => download("/audit/openlineage", "openlineage.json") }, t("log.exportOpenLineage"))),
    h("section", { class: "panel" }, h("h2", {}, t("log.anomalies")), table("log.anomaliesCaption", [
      { label: "log.anomalyKind", key: "kind" }, { label: "log.anomalyDetail", key: "message" }], anomalies)),
    h("section", { class: "panel" }, h("h2", {}, t("log.erasures")), table("log.erasuresCaption", [
      { label: "log.erasedAt", render: (e) => formatDate(e.event_time) }, { label: "lineage.partner", key: "partner" },
      { label: "log.deadline", render: (e) => formatDate(e.deadline) }, { label: "log.completed", render: (e) => formatDate(e.completed_at) }], erasures)));
}
