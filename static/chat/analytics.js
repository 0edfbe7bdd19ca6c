// Draws the usage analytics charts from the figures the page embeds with json_script. A click on
// a day opens the conversation list filtered to that day (and to the bar's model in the cost
// chart), with the page's own filters.
(function () {
  "use strict";

  const REASON_COLOURS = {
    completed: "#16a34a", stopped: "#f59e0b", budget: "#ea580c", too_long: "#a16207",
    provider_error: "#dc2626", timeout: "#7f1d1d", interrupted: "#7c3aed", service_error: "#be185d",
  };

  // A model keeps its colour whatever the period or filters: the server assigns one per model,
  // distinct over every model it has seen (chat/analytics/colours.py), in the figures' "colours".
  // Anything else (an ended reason without a colour of its own) gets a hue from its name.
  let modelColours = {};

  function colourFor(label) {
    if (modelColours[label]) return modelColours[label];
    let hash = 0x811c9dc5;
    for (let i = 0; i < label.length; i++) {
      hash ^= label.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return `hsl(${hash % 360} 68% ${38 + ((hash >>> 9) % 3) * 8}%)`;
  }

  function css(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function baseOptions(stacked, yTitle) {
    const ink = css("--body-quiet-color", "#666");
    const grid = css("--hairline-color", "#e5e7eb");
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { color: ink, boxWidth: 12 } } },
      scales: {
        x: { stacked: stacked, ticks: { color: ink, maxRotation: 0, autoSkipPadding: 12 }, grid: { display: false } },
        y: { stacked: stacked, beginAtZero: true, title: { display: !!yTitle, text: yTitle, color: ink }, ticks: { color: ink }, grid: { color: grid } },
      },
    };
  }

  function shortDay(iso) {
    const [year, month, day] = iso.split("-").map(Number);
    return new Date(year, month - 1, day).toLocaleDateString(undefined, { month: "short", day: "numeric" });
  }

  function listUrl(drill, extra) {
    const params = new URLSearchParams(drill.query);
    for (const [name, value] of Object.entries(extra)) params.set(name, value);
    return `${drill.url}?${params.toString()}`;
  }

  // Clicking a day: the conversations last active that day; `series` may add the bar's model.
  function drillDown(data, series) {
    return (event, elements, chart) => {
      const hit = chart.getElementsAtEventForMode(event, "index", { intersect: false }, false);
      if (!hit.length) return;
      const day = data.days[hit[0].index];
      const extra = { active_from: day, active_to: day };
      if (series) {
        const exact = chart.getElementsAtEventForMode(event, "nearest", { intersect: true }, false);
        const picked = exact.length ? series[exact[0].datasetIndex] : null;
        if (picked) {
          extra.provider__exact = picked.provider;
          extra.model__exact = picked.model;
        }
      }
      window.location.assign(listUrl(data.drill, extra));
    };
  }

  function clickable(options, onClick) {
    options.onClick = onClick;
    options.onHover = (event, elements, chart) => {
      const hit = chart.getElementsAtEventForMode(event, "index", { intersect: false }, false);
      chart.canvas.style.cursor = hit.length ? "pointer" : "default";
    };
    return options;
  }

  function percentiles(series, colours) {
    return ["p50", "p95", "p99"].map((name, i) => ({
      label: name, data: series[name], borderColor: colours[i], backgroundColor: colours[i],
      spanGaps: true, tension: 0.2, pointRadius: 2,
    }));
  }

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (canvas) new window.Chart(canvas, config);
  }

  function init() {
    const source = document.getElementById("usage-chart-data");
    const data = source ? JSON.parse(source.textContent) : null;
    modelColours = (data && data.colours) || {};
    document.querySelectorAll("[data-colour-for]").forEach((swatch) => {
      swatch.style.backgroundColor = colourFor(swatch.dataset.colourFor);
    });
    if (!data || !window.Chart) return;
    const labels = data.days.map(shortDay);

    const dollars = clickable(baseOptions(true, "$"), drillDown(data, data.cost_by_model));
    dollars.plugins.tooltip = { callbacks: { label: (item) => `${item.dataset.label}: $${item.parsed.y.toFixed(4)}` } };
    draw("chart-cost", {
      type: "bar",
      data: {
        labels,
        datasets: data.cost_by_model.map((series) => ({
          label: series.label, data: series.data, backgroundColor: colourFor(series.label),
        })),
      },
      options: dollars,
    });

    draw("chart-tokens", {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: "Input", data: data.tokens.input, backgroundColor: "#93c5fd" },
          { label: "Output", data: data.tokens.output, backgroundColor: "#4f46e5" },
        ],
      },
      options: clickable(baseOptions(true, "tokens"), drillDown(data)),
    });

    draw("chart-replies", {
      type: "bar",
      data: {
        labels,
        datasets: data.replies_by_reason.map((series) => ({
          label: series.label, data: series.data,
          backgroundColor: REASON_COLOURS[series.reason] || colourFor(series.reason),
        })),
      },
      options: clickable(baseOptions(true, "replies"), drillDown(data)),
    });

    draw("chart-feedback", {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: "Rated good", data: data.feedback.up, backgroundColor: "#16a34a" },
          { label: "Rated bad", data: data.feedback.down, backgroundColor: "#dc2626" },
        ],
      },
      options: clickable(baseOptions(true, "ratings"), drillDown(data)),
    });

    draw("chart-ttft", {
      type: "line",
      data: { labels, datasets: percentiles(data.ttft, ["#4f46e5", "#f59e0b", "#dc2626"]) },
      options: clickable(baseOptions(false, "ms"), drillDown(data)),
    });

    draw("chart-duration", {
      type: "line",
      data: { labels, datasets: percentiles(data.duration, ["#0891b2", "#d97706", "#b91c1c"]) },
      options: clickable(baseOptions(false, "ms"), drillDown(data)),
    });

    const speed = baseOptions(false, "% of replies");
    speed.scales.x.title = { display: true, text: "tokens/s", color: css("--body-quiet-color", "#666") };
    draw("chart-speed", {
      type: "line",
      data: {
        labels: data.speed.bins,
        datasets: data.speed.models.map((series) => ({
          label: series.label, data: series.data, borderColor: colourFor(series.label),
          backgroundColor: colourFor(series.label), tension: 0.3, pointRadius: 2,
        })),
      },
      options: speed,
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
