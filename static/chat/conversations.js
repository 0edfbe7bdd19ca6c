// Managing conversations on the chat page: the small comforts around the disclosures that
// rename, delete, export and edit (all of which work without JavaScript as plain forms).
(() => {
  "use strict";

  const openDisclosures = () => document.querySelectorAll("details.conversation-actions[open], details.edit-message[open]");

  // A disclosure whose form went through closes; the server has already swapped what changed.
  document.addEventListener("htmx:after:request", (event) => {
    const form = event.target.closest?.("form");
    const status = event.detail?.ctx?.response?.status ?? event.detail?.response?.status ?? 200;
    if (!form || status >= 400) return;
    const details = form.closest("details.conversation-actions, details.edit-message");
    if (details) details.open = false;
    if (form.classList.contains("rename-form")) {
      const title = document.getElementById("conversation-title");
      if (title) document.title = `${title.textContent} · chatsite`;
    }
  });

  // Fragments sent over the WebSocket are rendered without a request, so their forms carry no
  // CSRF token; a plain (non-htmx) post from one takes the page's token.
  document.addEventListener("submit", (event) => {
    const field = event.target.querySelector?.("input[name=csrfmiddlewaretoken]");
    if (!field || field.value) return;
    try {
      const headers = JSON.parse(document.body.getAttribute("hx-headers:inherited") || "{}");
      field.value = headers["X-CSRFToken"] || "";
    } catch {
      // No token to give: the server answers 403 and nothing is lost.
    }
  }, true);

  // Opening "Edit" puts the cursor at the end of the message.
  document.addEventListener("toggle", (event) => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open) return;
    const field = details.querySelector(":scope > form textarea, :scope .rename-form input[name=title]");
    if (field) {
      field.focus();
      const end = field.value.length;
      field.setSelectionRange?.(end, end);
    }
  }, true);

  // Escape or a click elsewhere closes an open menu or edit box.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    openDisclosures().forEach((details) => {
      if (details.contains(document.activeElement) || details.matches(".conversation-actions")) {
        details.open = false;
        details.querySelector("summary")?.focus();
      }
    });
  });
  document.addEventListener("click", (event) => {
    document.querySelectorAll("details.conversation-actions[open]").forEach((details) => {
      if (!details.contains(event.target)) details.open = false;
    });
  });

  // Ctrl/Cmd+Enter in the edit box sends it, as Enter does in the composer.
  document.addEventListener("keydown", (event) => {
    const field = event.target;
    if (!(field instanceof HTMLTextAreaElement) || !field.closest(".edit-form")) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      field.form.requestSubmit();
    }
  });
})();
