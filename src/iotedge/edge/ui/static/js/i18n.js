// English and French texts, and number/time formatting in the chosen language.
const TEXTS = {
  en: {
    title: "iotedge console", nav_fleet: "Fleet", nav_anomalies: "Anomalies", nav_status: "Edge status",
    language: "Language", logout: "Log out", login_title: "Sign in with your API key",
    login_help: "The key stays in this browser tab only and is sent as the x-api-key header.",
    api_key: "API key", sign_in: "Sign in", key_missing: "Paste an API key first.",
    key_refused: "This key was refused: it is wrong, revoked or expired.",
    rate_limited: "Too many requests (429): the edge asks to wait {s} s before trying again.",
    signed_in_as: "client {c}", signed_in_all: "every client (read-only)",
    edge_down: "The edge does not answer: data shown are from {t} and are stale.",
    upstream_down: "The device API does not answer (circuit {c}): values are stale.",
    server_error: "The edge answered with an error ({s}); showing the last data received.",
    loading: "Loading…", fleet: "Fleet", client: "Client", type: "Type", state: "State", all: "All",
    fresh: "fresh", stale: "stale", anomalous: "with open anomalies", object: "Object",
    last_values: "Last values", age: "Age", open_anomalies: "Open anomalies", none: "none",
    no_objects: "No object matches.", objects_count: "{n} objects", ago: "{a} ago", never: "never",
    window: "Window", statistics: "Statistics over the window", count: "count", average: "average",
    min: "min", max: "max", stddev: "std. dev.", last: "last", points: "{n} points", points_one: "{n} point",
    thresholds_note: "Dashed lines: rule thresholds. Shaded bands: anomaly events.",
    not_found: "No such object for this key.", back_to_fleet: "Back to the fleet",
    anomalies: "Anomalies", open: "open", resolved: "resolved", metric: "Metric", rule: "Rule",
    severity: "Severity", value: "Value", started: "Started", ended: "Ended", message: "Message",
    no_anomalies: "No anomaly matches.", still_open: "still open",
    edge_status: "Edge status", collector: "Collector", device_api: "Device API", store: "Store",
    notifications: "Notifications", gauges: "Container", ok: "OK", failing: "failing",
    last_success: "Last success", cycles: "Cycles", readings: "Readings stored", circuit: "Circuit breaker",
    failures: "Consecutive failures", last_error: "Last error", size: "Size on disk", channels: "Channels",
    pending: "Pending", cpu: "CPU", memory: "Memory", disk: "Disk", unknown: "unknown",
    circuit_closed: "closed", circuit_open: "open", circuit_half_open: "half-open",
    shown_at: "Around the anomaly at {t}", updated: "Updated {t}",
  },
  fr: {
    title: "Console iotedge", nav_fleet: "Parc", nav_anomalies: "Anomalies", nav_status: "État de l’edge",
    language: "Langue", logout: "Se déconnecter", login_title: "Connexion avec votre clé d’API",
    login_help: "La clé reste dans cet onglet seulement ; elle est envoyée dans l’en-tête x-api-key.",
    api_key: "Clé d’API", sign_in: "Se connecter", key_missing: "Collez d’abord une clé d’API.",
    key_refused: "Cette clé est refusée : elle est fausse, révoquée ou expirée.",
    rate_limited: "Trop de requêtes (429) : l’edge demande d’attendre {s} s avant de réessayer.",
    signed_in_as: "client {c}", signed_in_all: "tous les clients (lecture seule)",
    edge_down: "L’edge ne répond pas : les données affichées datent de {t} et sont périmées.",
    upstream_down: "L’API des objets ne répond pas (disjoncteur {c}) : les valeurs sont périmées.",
    server_error: "L’edge a répondu par une erreur ({s}) ; dernières données reçues affichées.",
    loading: "Chargement…", fleet: "Parc", client: "Client", type: "Type", state: "État", all: "Tous",
    fresh: "à jour", stale: "périmé", anomalous: "avec anomalies ouvertes", object: "Objet",
    last_values: "Dernières valeurs", age: "Âge", open_anomalies: "Anomalies ouvertes", none: "aucune",
    no_objects: "Aucun objet ne correspond.", objects_count: "{n} objets", ago: "il y a {a}", never: "jamais",
    window: "Fenêtre", statistics: "Statistiques sur la fenêtre", count: "nombre", average: "moyenne",
    min: "min", max: "max", stddev: "écart type", last: "dernière", points: "{n} points", points_one: "{n} point",
    thresholds_note: "Pointillés : seuils des règles. Bandes ombrées : anomalies.",
    not_found: "Aucun objet de ce nom pour cette clé.", back_to_fleet: "Retour au parc",
    anomalies: "Anomalies", open: "ouverte", resolved: "résolue", metric: "Mesure", rule: "Règle",
    severity: "Gravité", value: "Valeur", started: "Début", ended: "Fin", message: "Message",
    no_anomalies: "Aucune anomalie ne correspond.", still_open: "toujours ouverte",
    edge_status: "État de l’edge", collector: "Collecteur", device_api: "API des objets", store: "Stockage",
    notifications: "Notifications", gauges: "Conteneur", ok: "OK", failing: "en échec",
    last_success: "Dernier succès", cycles: "Cycles", readings: "Mesures stockées", circuit: "Disjoncteur",
    failures: "Échecs consécutifs", last_error: "Dernière erreur", size: "Taille sur disque", channels: "Canaux",
    pending: "En attente", cpu: "CPU", memory: "Mémoire", disk: "Disque", unknown: "inconnu",
    circuit_closed: "fermé", circuit_open: "ouvert", circuit_half_open: "semi-ouvert",
    shown_at: "Autour de l’anomalie du {t}", updated: "Mis à jour {t}",
  },
};

const UNITS = { celsius: "°C", percent: "%" };
const STORAGE = "iotedge.lang";

export function chosenLanguage() {
  const stored = localStorage.getItem(STORAGE);
  if (stored && TEXTS[stored]) return stored;
  const served = document.documentElement.lang;
  return TEXTS[served] ? served : "en";
}

let lang = chosenLanguage();

export function setLanguage(next) {
  lang = TEXTS[next] ? next : "en";
  localStorage.setItem(STORAGE, lang);
  document.documentElement.lang = lang;
}

export function language() {
  return lang;
}

export function t(key, vars = {}) {
  const text = TEXTS[lang][key] ?? TEXTS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

// A count in words: KEY_one where the language says singular (1 in English, 0 and 1 in French).
export function tCount(key, n) {
  const one = new Intl.PluralRules(lang).select(n) === "one" && TEXTS[lang][`${key}_one`];
  return t(one ? `${key}_one` : key, { n });
}

export function translatePage(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.title = t("title");
}

export function number(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return new Intl.NumberFormat(lang, { maximumFractionDigits: digits }).format(value);
}

export function withUnit(value, unit) {
  const shown = UNITS[unit] ?? (unit ? ` ${unit}` : "");
  return `${number(value)}${shown === "%" || shown === "°C" ? "\u202f" + shown : shown}`;
}

// Dates in the reader's own variant of the language (en-GB: 24-hour clock), else the language's.
function dateLocale() {
  return navigator.languages.find((tag) => tag.toLowerCase().split("-")[0] === lang) ?? lang;
}

export function dateTime(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Intl.DateTimeFormat(dateLocale(), { dateStyle: "short", timeStyle: "medium" }).format(new Date(ms));
}

// Time-axis labels in the console's language (uPlot's own are US English: "8:20pm", "12/1/26").
// Up to a day and a half: hours and minutes; longer: the date at midnight, the time otherwise.
export function axisTimes(splits, spanSeconds) {
  const time = new Intl.DateTimeFormat(dateLocale(), { hour: "2-digit", minute: "2-digit" });
  const day = new Intl.DateTimeFormat(dateLocale(), { day: "numeric", month: "short" });
  return splits.map((seconds) => {
    const at = new Date(seconds * 1000);
    const midnight = at.getHours() === 0 && at.getMinutes() === 0;
    return spanSeconds > 36 * 3600 && midnight ? day.format(at) : time.format(at);
  });
}

export function age(ms) {
  if (ms === null || ms === undefined) return t("never");
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const fmt = (v, unit) => new Intl.NumberFormat(lang, { style: "unit", unit, unitDisplay: "short" }).format(v);
  if (s < 120) return t("ago", { a: fmt(s, "second") });
  if (s < 7200) return t("ago", { a: fmt(Math.round(s / 60), "minute") });
  if (s < 172800) return t("ago", { a: fmt(Math.round(s / 3600), "hour") });
  return t("ago", { a: fmt(Math.round(s / 86400), "day") });
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${number(v, 1)} ${units[i]}`;
}
