// The API keys and sharing pages: a Copy button for a key or link. Without JavaScript (or
// clipboard access) it stays selectable in its read-only field. A form that htmx saves on
// change (the presence switch) needs no Save button.
document.addEventListener("DOMContentLoaded", () => {
  if (window.htmx) {
    for (const button of document.querySelectorAll("[data-without-js]")) button.hidden = true;
  }
  for (const button of document.querySelectorAll("[data-copy-target]")) {
    const field = document.getElementById(button.dataset.copyTarget);
    if (!field || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch {
        field.select();
      }
    });
  }
  const field = document.getElementById("new-key-value");
  if (field) {
    field.addEventListener("focus", () => field.select());
    field.focus();
  }
});
