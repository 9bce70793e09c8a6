// Partner operator: the federation's nodes with their health, and the datasets registered (schemas only).
import { api } from "../api.js";
import { badge, h, mount, table } from "../dom.js";
import { formatDate, formatNumber, t } from "../i18n.js";
import { screen } from "../main.js";

export async function nodes() {
  const render = async () => {
    const rows = await api.get("/nodes");
    mount(h("h1", {}, t("nodes.title")),
      table("nodes.caption", [
        { label: "nodes.partner", key: "partner_id" },
        { label: "nodes.health", render: (n) => badge(t(n.online ? "nodes.online" : "nodes.offline"), n.online ? "ok" : "bad") },
        { label: "nodes.lastHeartbeat", render: (n) => formatDate(n.last_heartbeat) },
        { label: "nodes.version", key: "version" },
        { label: "nodes.registered", render: (n) => formatDate(n.registered_at) },
      ], rows));
  };
  await render();
  screen.every(5000, render);
}

export async function datasets() {
  const rows = await api.get("/datasets");
  const tables = rows.flatMap((d) => Object.entries(d.tables).map(([name, summary]) => ({ ...d, table: name, summary })));
  mount(h("h1", {}, t("datasets.title")),
    h("p", { class: "note" }, t("datasets.schemaOnly")),
    table("datasets.caption", [
      { label: "datasets.partner", key: "partner_id" },
      { label: "datasets.name", key: "name" },
      { label: "datasets.table", key: "table" },
      { label: "datasets.rows", num: true, render: (r) => formatNumber(r.summary.rows_rounded) },
      { label: "datasets.columns", render: (r) => r.summary.columns.join(", ") },
    ], tables));
}
