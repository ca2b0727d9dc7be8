// Fleet view: clients, then their objects, with last values, freshness and open anomalies.
import { api } from "./api.js";
import { el, objectHref, patch, replace, select } from "./dom.js";
import { age, t, withUnit } from "./i18n.js";

export function mount(container, route) {
  const filters = { client: route.params.get("client") ?? "", type: "", state: "" };
  let data = null;
  const results = el("div", { id: "fleet-results" });
  const controls = el("div", { class: "filters" });
  replace(container, el("h1", {}, t("fleet")), controls, results);

  function buildControls() {
    const clients = [...new Set(data.objects.map((o) => o.client))].sort();
    const types = [...new Set(data.objects.map((o) => o.type))].sort();
    const boxes = [
      select("filter-client", t("client"), [["", t("all")], ...clients.map((c) => [c, c])], filters.client),
      select("filter-type", t("type"), [["", t("all")], ...types.map((v) => [v, v])], filters.type),
      select("filter-state", t("state"), [["", t("all")], ["fresh", t("fresh")], ["stale", t("stale")],
        ["anomalous", t("anomalous")]], filters.state),
    ];
    replace(controls, ...boxes.map(([label, box]) => {
      const key = box.id.replace("filter-", "");
      box.addEventListener("change", () => { filters[key] = box.value; render(); });
      return el("span", {}, label, box);
    }));
    controls.dataset.signature = JSON.stringify([clients, types]);
  }

  function freshness(obj) {
    const stale = obj.stale || data.stale;
    return el("span", { class: stale ? "stale" : "fresh", "data-freshness": stale ? "stale" : "fresh" },
      stale ? t("stale") : t("fresh"));
  }

  function row(obj, units, open) {
    const values = obj.metrics.map((m) => (m in obj.latest ? `${m}: ${withUnit(obj.latest[m], units[m])}` : null))
      .filter(Boolean);
    const lastMs = obj.last_reading_at ? Date.parse(obj.last_reading_at) : null;
    const events = open.get(obj.id) ?? [];
    return el("tr", { "data-key": obj.id, "data-object": obj.id, "data-client": obj.client },
      el("th", { scope: "row" }, el("a", { href: objectHref(obj.id) }, obj.id)),
      el("td", {}, obj.type),
      el("td", { class: "value" }, values.length ? values.join(" · ") : "–"),
      el("td", {}, freshness(obj), " ", el("span", { class: "muted" }, age(lastMs))),
      el("td", { "data-open": events.length },
        events.length ? events.map((e) => `${e.metric} ${e.rule}`).join(", ") : t("none")));
  }

  function render() {
    if (!data) return;
    const units = data.units;
    const open = new Map();
    for (const event of data.open) open.set(event.object_id, [...(open.get(event.object_id) ?? []), event]);
    const shown = data.objects.filter((o) =>
      (!filters.client || o.client === filters.client) && (!filters.type || o.type === filters.type)
      && (!filters.state || (filters.state === "anomalous" ? open.has(o.id)
        : (o.stale || data.stale ? "stale" : "fresh") === filters.state)));
    const byClient = new Map();
    for (const obj of shown) byClient.set(obj.client, [...(byClient.get(obj.client) ?? []), obj]);
    const tables = [...byClient.keys()].sort().map((client) => el("table", { "data-key": client, "data-client": client },
      el("caption", {}, `${t("client")} ${client} — ${t("objects_count", { n: byClient.get(client).length })}`),
      el("thead", {}, el("tr", {}, ...["object", "type", "last_values", "age", "open_anomalies"]
        .map((k) => el("th", { scope: "col" }, t(k))))),
      el("tbody", {}, byClient.get(client).map((o) => row(o, units, open)))));
    patch(results, tables.length ? tables : el("p", {}, t("no_objects")));
  }

  return {
    async refresh(status) {
      const [objects, open] = await Promise.all([
        api("/objects"),
        api("/anomalies", { state: "open", limit: 1000 }),
      ]);
      data = { objects: objects.objects, open: open.anomalies, units: status.units, stale: false };
      const clients = [...new Set(data.objects.map((o) => o.client))].sort();
      const types = [...new Set(data.objects.map((o) => o.type))].sort();
      if (controls.dataset.signature !== JSON.stringify([clients, types])) buildControls();
      render();
    },
    markStale() {
      if (!data) return;
      data.stale = true;
      render();
    },
  };
}
