// The console shell: sign-in, the signed-in person's screens, hash routes, language switch.
import { api, ApiError, setToken, token } from "./api.js";
import { announce, field, h, mount } from "./dom.js";
import { pickLocale, setLocale, t } from "./i18n.js";
import * as analyst from "./screens/analyst.js";
import * as auditor from "./screens/auditor.js";
import * as interchange from "./screens/interchange.js";
import * as officer from "./screens/officer.js";
import * as operator from "./screens/operator.js";
import { subjectRequests } from "./screens/subject_requests.js";

// What each role may open; an action a role may not take is not offered (and the API refuses it).
const SCREENS = {
  data_officer: [["inbox", "nav.inbox", officer.inbox], ["budget", "nav.budget", officer.budget],
                 ["agreements", "nav.agreements", interchange.agreements], ["requests", "nav.requests", subjectRequests]],
  analyst: [["jobs", "nav.jobs", analyst.jobs], ["launch", "nav.launch", analyst.launch],
            ["models", "nav.models", analyst.models], ["compare", "nav.compare", analyst.compare]],
  auditor: [["lineage", "nav.lineage", auditor.lineage], ["log", "nav.log", auditor.logStatus],
            ["requests", "nav.requests", subjectRequests]],
  partner_operator: [["nodes", "nav.nodes", operator.nodes], ["datasets", "nav.datasets", operator.datasets],
                     ["psi", "nav.psiRuns", interchange.psiRuns], ["settlements", "nav.settlements", interchange.settlements],
                     ["agreements", "nav.agreements", interchange.agreements]],
  federation_admin: [["nodes", "nav.nodes", operator.nodes], ["datasets", "nav.datasets", operator.datasets],
                     ["psi", "nav.psiRuns", interchange.psiRuns], ["settlements", "nav.settlements", interchange.settlements],
                     ["agreements", "nav.agreements", interchange.agreements]],
};
// Detail pages reached from a list: "#/job/ID" and so on.
const DETAILS = { job: analyst.jobDetail, model: analyst.modelDetail, policy: officer.policyDetail,
                  agreement: interchange.agreementDetail };

let me = null;
const timers = new Set();
export const screen = {
  every(ms, fn) { const id = setInterval(fn, ms); timers.add(id); return id; },
  me: () => me,
};

function signIn() {
  const input = h("input", { type: "password", autocomplete: "off", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "panel", onsubmit: async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try { await start(); } catch (err) { setToken(null); error.textContent = describe(err); }
  } }, h("h1", {}, t("signin.title")), field("signin.token", input, "signin.tokenHint"), error,
  h("button", { type: "submit" }, t("signin.submit")));
  mount(form);
  input.focus();
}

export function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return t("error.unreachable");
    if (err.status === 401) return t("error.unauthorised");
    if (err.status === 403) return t("error.forbidden");
    return t("error.refused", { message: err.message });
  }
  return String(err);
}

function renderNav() {
  const nav = document.getElementById("nav");
  const screens = SCREENS[me.role] || [];
  nav.replaceChildren(...screens.map(([id, label]) => h("a", { href: `#/${id}`, "data-screen": id }, t(label))));
  document.getElementById("who").textContent = t("app.signedInAs", { name: me.name, role: t(`role.${me.role}`), org: me.organisation });
  document.getElementById("signout").hidden = false;
}

// Routes draw one at a time, and a route asked for while another was drawing is the only one drawn
// next: a slow screen (its data still loading) must never draw over the screen opened after it, nor
// mark the page ready under the wrong name. Each draw returns only once its screen is drawn.
let drawing = Promise.resolve();
let routesAsked = 0;
function route() {
  const asked = ++routesAsked;
  const drawn = drawing.then(() => (asked === routesAsked ? drawRoute() : undefined));
  drawing = drawn.catch(() => undefined);  // one failed draw must not stop every later one
  return drawn;
}

async function drawRoute() {
  for (const id of timers) clearInterval(id);
  timers.clear();
  if (!me) return;
  const main = document.getElementById("main");
  delete main.dataset.ready;
  const [name, ...rest] = (location.hash.replace(/^#\/?/, "") || "").split("/");
  const screens = SCREENS[me.role] || [];
  const chosen = screens.find(([id]) => id === name);
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.screen === name) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  try {
    if (chosen) await chosen[2]();
    else if (DETAILS[name] && rest.length) await DETAILS[name](...rest.map(decodeURIComponent));
    else if (screens.length) { location.hash = `#/${screens[0][0]}`; return; }
    else mount(h("p", {}, t("error.noScreens")));
    main.focus();
  } catch (err) {
    mount(h("p", { class: "error", role: "alert" }, describe(err)));
  }
  // The screen has its data and is drawn: tests and the load-time bench wait for this mark.
  main.dataset.ready = name;
  performance.mark(`loyalfed:ready:${name}`);
}

async function start() {
  me = await api.get("/me");
  renderNav();
  await route();
}

async function boot() {
  const select = document.getElementById("lang");
  const locale = pickLocale();
  select.value = locale;
  await setLocale(locale);
  select.setAttribute("aria-label", t("app.language"));
  select.addEventListener("change", async () => {
    await setLocale(select.value);
    if (me) { renderNav(); await route(); } else signIn();
    announce(t("app.languageChanged"));
  });
  document.getElementById("signout").addEventListener("click", () => { setToken(null); me = null; location.hash = ""; location.reload(); });
  window.addEventListener("hashchange", route);
  if (token()) { try { await start(); return; } catch { setToken(null); } }
  signIn();
}

boot();
