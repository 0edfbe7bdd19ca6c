// The conversation list: below 1600 px its filters sit in a bar above the table (see admin.css),
// where open filter groups would push the list down. Groups that filter nothing start closed
// there, unless the reviewer opened or closed them before (Django's filters.js remembers that).
(function () {
  "use strict";

  function init() {
    const filter = document.getElementById("changelist-filter");
    if (!filter || !window.matchMedia("(max-width: 1599px)").matches) return;
    const remembered = JSON.parse(sessionStorage.getItem("django.admin.filtersState") || "{}");
    filter.querySelectorAll("details[data-filter-title]").forEach((group) => {
      if (group.dataset.filterTitle in remembered) return;
      const first = group.querySelector("li");
      const filtering = group.querySelector("li.selected") !== first || group.querySelector(".errorlist");
      if (!filtering) group.removeAttribute("open");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
