// Anomalies view: open and resolved events with filters, each linking to its object at that time.
import { api } from "./api.js";
import { el, objectHref, patch, replace, select } from "./dom.js";
import { dateTime, number, t } from "./i18n.js";

const METRICS = ["temperature", "humidity", "activity_level", "battery_level"];

export function mount(container, route) {
  const filters = { state: route.params.get("state") ?? "all", client: "", metric: "" };
  const controls = el("div", { class: "filters" });
  const results = el("div", { id: "anomaly-results" });
  replace(container, el("h1", {}, t("anomalies")), controls, results);
  let clients = null;

  function buildControls() {
    const boxes = [
      select("filter-state", t("state"), [["all", t("all")], ["open", t("open")], ["resolved", t("resolved")]],
        filters.state),
      select("filter-client", t("client"), [["", t("all")], ...clients.map((c) => [c, c])], filters.client),
      select("filter-metric", t("metric"), [["", t("all")], ...METRICS.map((m) => [m, m])], filters.metric),
    ];
    replace(controls, ...boxes.map(([label, box]) => {
      const key = box.id.replace("filter-", "");
      box.addEventListener("change", () => {
        filters[key] = box.value;
        view.refresh().catch(() => view.markStale());
      });
      return el("span", {}, label, box);
    }));
  }

  function row(e) {
    return el("tr", { "data-key": e.event_id, "data-event": e.event_id, "data-object": e.object_id, "data-state": e.state },
      el("td", {}, dateTime(e.started_at_ms)),
      el("td", {}, e.ended_at_ms ? dateTime(e.ended_at_ms) : t("still_open")),
      el("td", {}, e.client),
      el("th", { scope: "row" }, el("a", { href: objectHref(e.object_id, e.started_at_ms) }, e.object_id)),
      el("td", {}, e.metric),
      el("td", {}, e.rule),
      el("td", { class: `sev-${e.severity === "critical" ? "critical" : "warning"}` }, e.severity),
      el("td", { class: "value" }, number(e.value)),
      el("td", {}, e.message));
  }

  const view = {
    async refresh() {
      if (clients === null) {
        const objects = await api("/objects");
        clients = [...new Set(objects.objects.map((o) => o.client))].sort();
        buildControls();
      }
      const answer = await api("/anomalies", {
        state: filters.state, client_id: filters.client, metric: filters.metric, limit: 200,
      });
      const heads = ["started", "ended", "client", "object", "metric", "rule", "severity", "value", "message"];
      results.classList.remove("view-stale");
      patch(results, answer.anomalies.length
        ? el("table", { id: "anomaly-table" }, el("caption", {}, `${t("anomalies")} (${answer.count})`),
          el("thead", {}, el("tr", {}, heads.map((k) => el("th", { scope: "col" }, t(k))))),
          el("tbody", {}, answer.anomalies.map(row)))
        : el("p", {}, t("no_anomalies")));
    },
    markStale() {
      results.classList.add("view-stale");
    },
  };
  return view;
}
