// Edge status view: collector, device API and its circuit breaker, store, notifications, gauges.
import { el, patch, replace } from "./dom.js";
import { bytes, dateTime, number, t } from "./i18n.js";

function card(titleKey, rows, extra = null) {
  return el("section", { class: "card", "aria-labelledby": `card-${titleKey}` },
    el("h2", { id: `card-${titleKey}` }, t(titleKey)),
    el("dl", { class: "stats" }, rows.map(([key, value, attrs]) => [el("dt", {}, t(key)), el("dd", attrs ?? {}, value)])),
    extra);
}

function gauge(key, percent) {
  const id = `gauge-${key}`;
  const value = percent === null || percent === undefined ? null : percent;
  return el("div", { class: "gauge" },
    el("label", { for: id }, t(key)),
    el("meter", { id, min: 0, max: 100, low: 70, high: 90, optimum: 0, value: value ?? 0 }),
    el("span", { "data-gauge": key }, value === null ? t("unknown") : `${number(value, 1)} %`));
}

export function mount(container) {
  const cards = el("div", { class: "cards", id: "status-cards" });
  replace(container, el("h1", {}, t("edge_status")), cards);
  return {
    async refresh(s) {
      const ok = (v) => el("span", { class: v ? "fresh" : "stale" }, v ? t("ok") : t("failing"));
      const n = s.notifications;
      const counts = Object.entries(n.by_status).map(([k, v]) => [k, String(v)]);
      const gauges = s.container ?? {};
      patch(cards,
        card("collector", [
          ["state", ok(s.collector.ok), { "data-check": "collector" }],
          ["last_success", s.collector.last_success_at ? dateTime(Date.parse(s.collector.last_success_at)) : t("never")],
          ["cycles", number(s.collector.cycles, 0)],
          ["readings", number(s.collector.readings_ingested, 0)],
        ]),
        card("device_api", [
          ["state", ok(s.upstream.ok), { "data-check": "upstream" }],
          ["circuit", t(`circuit_${s.upstream.circuit}`), { "data-circuit": s.upstream.circuit }],
          ["failures", number(s.upstream.consecutive_failures, 0)],
          ["last_error", s.upstream.last_error ?? "–"],
        ]),
        card("store", [["size", bytes(s.store.size_bytes)]]),
        el("section", { class: "card", "aria-labelledby": "card-notifications" },
          el("h2", { id: "card-notifications" }, t("notifications")),
          el("dl", { class: "stats" },
            el("dt", {}, t("channels")), el("dd", {}, n.channels.length ? n.channels.join(", ") : t("none")),
            counts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
            n.pending === null ? null : [el("dt", {}, t("pending")), el("dd", { "data-pending": "" }, String(n.pending))])),
        el("section", { class: "card", "aria-labelledby": "card-gauges" },
          el("h2", { id: "card-gauges" }, t("gauges")),
          gauge("cpu", gauges.cpu_percent), gauge("memory", gauges.memory_percent), gauge("disk", gauges.disk_percent)));
    },
  };
}
