// The console's shell: login, routing between views, the live refresh loop, the banner.
import { api, ApiError, session } from "./api.js";
import { el, replace } from "./dom.js";
import { chosenLanguage, dateTime, setLanguage, t, translatePage } from "./i18n.js";
import * as anomalies from "./anomalies.js";
import * as fleet from "./fleet.js";
import * as object from "./object.js";
import * as status from "./status.js";

const $ = (id) => document.getElementById(id);
const state = { status: null, view: null, viewName: null, timer: null, generation: 0, lastOk: null, message: null };

function parseRoute() {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/");
  if (parts[0] === "object" && parts[1]) {
    let id;
    try { id = decodeURIComponent(parts.slice(1).join("/")); } catch { id = ""; }
    return { name: "object", id, params };
  }
  if (parts[0] === "anomalies" || parts[0] === "status") return { name: parts[0], params };
  return { name: "fleet", params };
}

const VIEWS = { fleet, object, anomalies, status };

function setBanner(text, bad = false) {
  const banner = $("banner");
  banner.hidden = !text;
  banner.textContent = text ?? "";
  banner.classList.toggle("bad", bad);
}

function showLogin(message = "") {
  clearTimeout(state.timer);
  state.generation += 1;
  state.status = null;
  state.view = null;
  replace($("view"));
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("edge-id").textContent = "";
  setBanner(null);
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("key-input").focus();
}

function loginMessage(error) {
  if (error.kind === "auth") return t("key_refused");
  if (error.kind === "rate") return t("rate_limited", { s: error.retryAfter ?? "?" });
  if (error.kind === "network") return t("edge_down", { t: t("never") });
  return t("server_error", { s: error.status });
}

async function login(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) {
    $("login-error").textContent = t("key_missing");
    return;
  }
  try {
    state.status = await api("/status", {}, key);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    $("login-error").textContent = loginMessage(error);
    return;
  }
  session.set(key);
  $("key-input").value = "";
  start();
}

function start() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  route();
}

function showWho() {
  const s = state.status;
  if (!s) return;
  $("who").textContent = s.scope === "*" ? t("signed_in_all") : t("signed_in_as", { c: s.scope });
  $("edge-id").textContent = s.edge_id;
}

function route() {
  if (!session.key()) return showLogin();
  clearTimeout(state.timer);
  state.generation += 1;
  const r = parseRoute();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === (r.name === "object" ? "fleet" : r.name)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const container = $("view");
  replace(container, el("p", { class: "muted" }, t("loading")));
  // Which route the content is for, and how many refreshes it has had: what tests and
  // scripts wait on before they look at a view.
  container.dataset.route = window.location.hash;
  delete container.dataset.refreshes;
  state.viewName = r.name;
  state.view = VIEWS[r.name].mount(container, r, () => state.status);
  tick(state.generation);
}

function pollMs() {
  const seconds = state.status?.poll_interval_seconds ?? 5;
  return Math.min(10000, Math.max(1000, seconds * 1000));
}

async function tick(generation) {
  const view = state.view;
  try {
    state.status = await api("/status");
    if (generation !== state.generation) return;
    showWho();
    await view.refresh(state.status);
    if (generation !== state.generation) return;
    state.lastOk = Date.now();
    $("view").classList.remove("view-stale");
    const upstream = state.status.upstream;
    setBanner(upstream.ok ? null : t("upstream_down", { c: t(`circuit_${upstream.circuit}`) }), !upstream.ok);
    const counter = Number($("view").dataset.refreshes ?? 0) + 1;
    $("view").dataset.refreshes = String(counter);
  } catch (error) {
    if (generation !== state.generation) return;
    if (!(error instanceof ApiError)) throw error;
    if (error.kind === "auth") {
      session.clear();
      showLogin(t("key_refused"));
      return;
    }
    $("view").classList.add("view-stale");
    view?.markStale?.();
    if (error.kind === "rate") setBanner(t("rate_limited", { s: error.retryAfter ?? "?" }), true);
    else if (error.kind === "network") setBanner(t("edge_down", { t: state.lastOk ? dateTime(state.lastOk) : t("never") }), true);
    else if (error.kind === "notfound") view?.notFound?.();
    else setBanner(t("server_error", { s: error.status }), true);
  }
  if (generation === state.generation) state.timer = setTimeout(() => tick(generation), pollMs());
}

function init() {
  setLanguage(chosenLanguage());
  translatePage();
  const switcher = $("lang-switch");
  switcher.value = chosenLanguage();
  switcher.addEventListener("change", () => {
    setLanguage(switcher.value);
    translatePage();
    if (session.key() && state.view) route();
  });
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => {
    session.clear();
    window.location.hash = "";
    showLogin();
  });
  window.addEventListener("hashchange", route);
  if (session.key()) start();
  else showLogin();
}

init();
