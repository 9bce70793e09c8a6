// Building the page: elements, labelled form fields and tables. Text goes in as text, never as HTML,
// so nothing the API returns can inject markup.
import { t } from "./i18n.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let fieldCount = 0;
// A control with its visible label: every input has one (accessibility, and the tests find fields by it).
export function field(labelKey, control, hintKey) {
  fieldCount += 1;
  const id = control.id || `f${fieldCount}`;
  control.id = id;
  const hint = hintKey ? h("span", { class: "note", id: `${id}-hint` }, t(hintKey)) : null;
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  // The label holds its text only, so a control's accessible name is exactly its label.
  return h("div", { class: "field" }, h("label", { for: id }, t(labelKey)), control, hint);
}

// columns: [{key, label, num?, render?(row)}]
export function table(captionKey, columns, rows) {
  return h("table", {},
    h("caption", { class: "note" }, t(captionKey)),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : undefined }, t(c.label))))),
    h("tbody", {}, rows.length
      ? rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : undefined }, c.render ? c.render(row) : row[c.key]))))
      : h("tr", {}, h("td", { colspan: columns.length, class: "note" }, t("common.none")))));
}

export function badge(text, kind) { return h("span", { class: `badge ${kind || ""}` }, text); }

export function mount(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

export function announce(message) { document.getElementById("status").textContent = message; }

// "Items 1–50 of 1,000" with buttons to the newer and older pages; turn(by) moves the offset.
export function pager({ offset, shown, total, size, turn, fmt }) {
  return h("p", { class: "pager" },
    t("common.showing", { from: fmt(total ? offset + 1 : 0), to: fmt(offset + shown), total: fmt(total) }), " ",
    h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => turn(-size) }, t("common.newer")), " ",
    h("button", { type: "button", class: "secondary", disabled: offset + shown >= total, onclick: () => turn(size) }, t("common.older")));
}
