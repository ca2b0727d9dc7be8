// Object view: one uPlot chart per metric, window picker, thresholds, anomaly bands, statistics.
import { api, segment } from "./api.js";
import { el, patch, replace } from "./dom.js";
import { axisTimes, dateTime, number, t, tCount, withUnit } from "./i18n.js";

const WINDOWS = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000 };
const BUCKETS = 300;
const AROUND_S = 1800;

function rangeOf(windowName, atMs) {
  if (atMs) {
    const now = Date.now() / 1000;
    const since = atMs / 1000 - AROUND_S;
    const until = Math.min(now, atMs / 1000 + AROUND_S);
    return { params: { from: Math.floor(since), to: Math.ceil(Math.max(until, since + 60)) }, seconds: 2 * AROUND_S };
  }
  return { params: { window: windowName }, seconds: WINDOWS[windowName] };
}

function drawBands(events) {
  return (u) => {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.fillStyle = "rgba(207, 34, 46, 0.14)";
    for (const e of events()) {
      const x0 = u.valToPos(e.started_at_ms / 1000, "x", true);
      const x1 = u.valToPos((e.ended_at_ms ?? Date.now()) / 1000, "x", true);
      ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
    }
    ctx.restore();
  };
}

function drawThresholds(levels) {
  return (u) => {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.strokeStyle = "#a40e26";
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1.5;
    for (const level of levels) {
      const y = u.valToPos(level, "y", true);
      if (y < top || y > top + height) continue;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
    }
    ctx.restore();
  };
}

function statsList(row) {
  const items = [["count", row?.count, 0], ["average", row?.average], ["min", row?.min], ["max", row?.max],
    ["stddev", row?.stddev], ["last", row?.last]];
  return el("dl", { class: "stats" }, items.map(([key, value, digits]) =>
    [el("dt", {}, t(key)), el("dd", { "data-stat": key }, number(value, digits ?? 2))]));
}

export function mount(container, route) {
  const id = route.id;
  const atMs = Number(route.params.get("at")) || null;
  let windowName = WINDOWS[route.params.get("window")] ? route.params.get("window") : "1h";
  let atShown = atMs;
  const charts = new Map();
  let events = [];
  let info = null;
  const heading = el("h1", {}, `${t("object")} ${id}`);
  const subtitle = el("p", { class: "muted" });
  const picker = el("div", { class: "windows", role: "group", "aria-label": t("window") });
  const body = el("div", { id: "object-charts" });
  replace(container, heading, subtitle, picker, el("p", { class: "legend-note" }, t("thresholds_note")), body);

  function buildPicker() {
    replace(picker, Object.keys(WINDOWS).map((name) => {
      const button = el("button", { type: "button", "data-window": name,
        "aria-pressed": !atShown && name === windowName ? "true" : "false" }, name);
      button.addEventListener("click", () => {
        windowName = name;
        atShown = null;
        buildPicker();
        view.refresh(lastStatus).catch(() => view.markStale());
        picker.querySelector(`[data-window="${name}"]`).focus();
      });
      return button;
    }));
  }

  function chartFor(metric, status) {
    if (charts.has(metric)) return charts.get(metric);
    const unit = status.units[metric];
    const levels = status.thresholds.filter((r) => r.metric === metric).map((r) => r.above ?? r.below);
    const caption = el("figcaption", {});
    const stats = el("div", {}, statsList(null));
    const holder = el("div", { class: "chart", "data-metric": metric, "data-points": "0" });
    const figure = el("figure", { class: "metric", "data-metric": metric }, el("div", {}, caption, holder),
      el("section", { "aria-label": `${t("statistics")} ${metric}` }, el("h2", {}, t("statistics")), stats));
    body.append(figure);
    const opts = {
      width: Math.max(320, Math.min(760, body.clientWidth - 260)),
      height: 220,
      cursor: { show: true },
      legend: { show: false },
      scales: {
        x: { time: true, range: () => shownRange },
        y: {
          range: (u, lo, hi) => {
            const all = [lo, hi, ...levels].filter((v) => v !== null && v !== undefined && Number.isFinite(v));
            if (!all.length) return [0, 1];
            const min = Math.min(...all), max = Math.max(...all);
            const pad = (max - min || Math.abs(max) || 1) * 0.08;
            return [min - pad, max + pad];
          },
        },
      },
      series: [{}, { label: metric, stroke: "#0a58ca", width: 1.5, points: { show: (u) => u.data[0].length < 40, size: 6 } }],
      axes: [
        { stroke: "#1b1f24", values: (u, splits) => axisTimes(splits, u.scales.x.max - u.scales.x.min) },
        { stroke: "#1b1f24", label: unit === "celsius" ? "°C" : unit === "percent" ? "%" : unit },
      ],
      hooks: { drawClear: [drawBands(() => events.filter((e) => e.metric === metric))], draw: [drawThresholds(levels)] },
    };
    const plot = new window.uPlot(opts, [[], []], holder);
    const chart = { plot, caption, stats, holder, unit };
    charts.set(metric, chart);
    return chart;
  }

  let lastStatus = null;
  let shownRange = [Date.now() / 1000 - 3600, Date.now() / 1000];
  const view = {
    async refresh(status) {
      lastStatus = status;
      if (!picker.firstChild) buildPicker();
      const range = rangeOf(windowName, atShown);
      const step = Math.max(1, Math.round(range.seconds / BUCKETS));
      const now = Date.now() / 1000;
      shownRange = range.params.from ? [range.params.from, range.params.to] : [now - range.seconds, now];
      info = await api(`/objects/${segment(id)}`);
      subtitle.textContent = `${t("client")} ${info.client} · ${t("type")} ${info.type}`
        + (atShown ? ` · ${t("shown_at", { t: dateTime(atShown) })}` : "");
      const [series, stats, anomalies] = await Promise.all([
        Promise.all(info.metrics.map((m) => api(`/objects/${segment(id)}/readings`,
          { ...range.params, metric: m, step, limit: 1000 }))),
        api("/statistics", { ...range.params, by: "object", object_id: id }),
        api("/anomalies", { object_id: id, state: "all", limit: 500 }),
      ]);
      events = anomalies.anomalies;
      info.metrics.forEach((metric, i) => {
        const chart = chartFor(metric, status);
        const points = series[i].points;
        chart.plot.setData([points.map((p) => p.timestamp / 1000), points.map((p) => p.value)]);
        const drawn = chart.plot.data[0].length;
        chart.holder.dataset.points = String(drawn);
        chart.caption.classList.remove("stale");
        chart.caption.textContent = `${metric} (${chart.unit === "celsius" ? "°C" : chart.unit === "percent" ? "%" : chart.unit})`
          + ` — ${tCount("points", drawn)}`;
        const row = stats.find((r) => r.metric === metric);
        patch(chart.stats, statsList(row));
        if (row?.last !== undefined && row?.last !== null) chart.stats.dataset.last = withUnit(row.last, chart.unit);
      });
    },
    markStale() {
      for (const chart of charts.values()) chart.caption.classList.add("stale");
    },
    notFound() {
      replace(container, el("h1", {}, `${t("object")} ${id}`), el("p", { class: "error" }, t("not_found")),
        el("a", { href: "#/fleet" }, t("back_to_fleet")));
    },
  };
  return view;
}
