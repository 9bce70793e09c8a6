// Data-subject requests (erasure, access) as the nodes report them: ids and dates, never a member.
// A data officer sees their own partner's, with each open request against its deadline and the
// overdue ones marked; an auditor sees every partner's, each with its completion.
import { api } from "../api.js";
import { badge, field, h, mount, table } from "../dom.js";
import { formatDate, formatNumber, t } from "../i18n.js";
import { screen } from "../main.js";

// On time, late, open, or open past its deadline: the officer's to-do and the auditor's check.
function standing(r) {
  if (r.status === "completed") return badge(t(r.overdue ? "dsr.late" : "dsr.onTime"), r.overdue ? "bad" : "ok");
  return badge(t(r.overdue ? "dsr.overdue" : "dsr.open"), r.overdue ? "bad" : "warn");
}

function columns(withPartner) {
  return [
    withPartner ? { label: "dsr.partner", key: "partner_id" } : null,
    { label: "dsr.request", render: (r) => h("code", {}, r.request_id) },
    { label: "dsr.kindHeader", render: (r) => t(`dsr.kind.${r.kind}`) },
    { label: "dsr.received", render: (r) => formatDate(r.received_at) },
    { label: "dsr.deadline", render: (r) => formatDate(r.deadline) },
    { label: "dsr.completed", render: (r) => (r.completed_at ? formatDate(r.completed_at) : "—") },
    { label: "dsr.standing", render: standing },
  ].filter(Boolean);
}

export async function subjectRequests() {
  const me = screen.me();
  const everyPartner = me.role !== "data_officer";
  const kind = h("select", {}, h("option", { value: "" }, t("common.any")),
    ["erasure", "access"].map((k) => h("option", { value: k, selected: everyPartner && k === "erasure" }, t(`dsr.kind.${k}`))));
  const results = h("div");
  const load = async () => {
    const rows = await api.get(`/subject-requests${kind.value ? `?kind=${kind.value}` : ""}`);
    const open = rows.filter((r) => r.status === "open");
    const overdue = rows.filter((r) => r.overdue && r.status === "open");
    results.replaceChildren(
      h("p", {}, badge(t("dsr.openCount", { n: formatNumber(open.length) }), open.length ? "warn" : "ok"), " ",
        badge(t("dsr.overdueCount", { n: formatNumber(overdue.length) }), overdue.length ? "bad" : "ok")),
      overdue.length ? h("p", { class: "alarm", role: "alert" }, t("dsr.overdueAlarm")) : null,
      table(everyPartner ? "dsr.captionAll" : "dsr.captionOwn", columns(everyPartner), rows));
  };
  kind.addEventListener("change", load);
  mount(h("h1", {}, t("dsr.title")), h("p", { class: "note" }, t("dsr.explain")),
    h("div", { class: "panel" }, field("dsr.filterKind", kind)), results);
  await load();
}
