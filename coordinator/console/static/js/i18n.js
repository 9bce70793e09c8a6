// Translations and locale formats. Every visible label goes through t(); a test checks that each key
// used here, in the screens and in index.html exists in every locale file.
const LOCALES = ["en", "zh-CN"];
let locale = "en";
let messages = {};

export function pickLocale() {
  const saved = localStorage.getItem("loyalfed.locale");
  if (LOCALES.includes(saved)) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export async function setLocale(next) {
  const response = await fetch(`locales/${next}.json`);
  messages = await response.json();
  locale = next;
  localStorage.setItem("loyalfed.locale", next);
  document.documentElement.lang = next;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
}

export function currentLocale() { return locale; }

// t("jobs.count", {n: 3}) -> "3 jobs"; a missing key shows itself in brackets (and fails the key test).
export function t(key, params = {}) {
  const text = messages[key];
  if (text === undefined) return `[${key}]`;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return new Intl.NumberFormat(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
}

export function formatDate(value) {
  if (!value) return "—";
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(new Date(value));
}

export function formatMoney(value, currency) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(locale, { style: "currency", currency }).format(value);
}
