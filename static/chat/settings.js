// The API keys page: a Copy button for the key shown once. Without JavaScript (or clipboard
// access) the key stays selectable in its read-only field.
document.addEventListener("DOMContentLoaded", () => {
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
