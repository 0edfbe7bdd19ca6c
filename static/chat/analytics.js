// Draws the usage analytics charts from the figures the page embeds with json_script.
(function () {
  "use strict";

  const REASON_COLOURS = {
    completed: "#16a34a", stopped: "#f59e0b", budget: "#ea580c",
    provider_error: "#dc2626", timeout: "#7f1d1d", interrupted: "#7c3aed",
  };
  const PALETTE = ["#4f46e5", "#0891b2", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#64748b", "#dc2626", "#0d9488", "#a16207"];

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

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (canvas) new window.Chart(canvas, config);
  }

  function init() {
    const source = document.getElementById("usage-chart-data");
    if (!source || !window.Chart) return;
    const data = JSON.parse(source.textContent);
    const labels = data.days.map(shortDay);

    const dollars = baseOptions(true, "$");
    dollars.plugins.tooltip = { callbacks: { label: (item) => `${item.dataset.label}: $${item.parsed.y.toFixed(4)}` } };
    draw("chart-cost", {
      type: "bar",
      data: {
        labels,
        datasets: data.cost_by_model.map((series, i) => ({
          label: series.label, data: series.data, backgroundColor: PALETTE[i % PALETTE.length],
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
      options: baseOptions(true, "tokens"),
    });

    draw("chart-replies", {
      type: "bar",
      data: {
        labels,
        datasets: data.replies_by_reason.map((series, i) => ({
          label: series.label, data: series.data,
          backgroundColor: REASON_COLOURS[series.reason] || PALETTE[i % PALETTE.length],
        })),
      },
      options: baseOptions(true, "replies"),
    });

    draw("chart-ttft", {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "p50", data: data.ttft.p50, borderColor: "#4f46e5", backgroundColor: "#4f46e5", spanGaps: true, tension: 0.2, pointRadius: 2 },
          { label: "p95", data: data.ttft.p95, borderColor: "#f59e0b", backgroundColor: "#f59e0b", spanGaps: true, tension: 0.2, pointRadius: 2 },
        ],
      },
      options: baseOptions(false, "ms"),
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
