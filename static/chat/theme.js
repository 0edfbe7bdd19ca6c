// The colour scheme: light, dark, or the system's (the default), remembered per browser.
// Loaded without `defer` in <head>, so the chosen scheme is set before the first paint (no
// flash of the wrong colours) — an external file, as a strict CSP allows no inline script.
// Without JavaScript the stylesheet follows prefers-color-scheme by itself.
(() => {
  "use strict";
  const KEY = "chatsite-theme";
  const root = document.documentElement;
  // Controls that only work with JavaScript (an edit's Cancel) show when it runs.
  root.dataset.js = "";

  function stored() {
    try {
      const value = localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch {
      return "system"; // storage disabled: follow the system
    }
  }

  function apply(choice) {
    if (choice === "system") delete root.dataset.theme;
    else root.dataset.theme = choice;
  }

  apply(stored());

  function choose(choice) {
    try {
      if (choice === "system") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, choice);
    } catch {
      // Not remembered, but still applied to this page.
    }
    apply(choice);
  }

  // Another tab changed the scheme: follow it.
  window.addEventListener("storage", (event) => {
    if (event.key === KEY || event.key === null) {
      apply(stored());
      sync();
    }
  });

  function sync() {
    document.querySelectorAll("[data-theme-choice]").forEach((select) => {
      select.value = stored();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-theme-choice]").forEach((select) => {
      select.hidden = false;
      select.closest("[data-theme-control]")?.removeAttribute("hidden");
      select.addEventListener("change", () => choose(select.value));
    });
    sync();
  });
})();
