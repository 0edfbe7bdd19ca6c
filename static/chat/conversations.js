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

  // Cancel (or Escape) in an edit box: the message as it was, the box closed, focus back on
  // its "Edit", and said so.
  const announcer = () => document.getElementById("composer-status");
  function cancelEdit(details) {
    details.querySelector("form")?.reset();
    details.open = false;
    details.querySelector("summary")?.focus();
    const status = announcer();
    if (status) status.textContent = "Edit cancelled; the message is unchanged.";
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("[data-cancel-edit]");
    const details = button?.closest("details.edit-message");
    if (details) cancelEdit(details);
  });

  // Escape or a click elsewhere closes an open menu or edit box.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    openDisclosures().forEach((details) => {
      if (details.matches(".edit-message") && details.contains(document.activeElement)) {
        cancelEdit(details);
      } else if (details.contains(document.activeElement) || details.matches(".conversation-actions")) {
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

  // With CHAT_TITLE_MODEL, a cheap model names a conversation once its first reply is done:
  // ask for the name a few times, then show it in the header, the sidebar and the tab.
  const named = new Set();
  const messages = document.getElementById("messages");
  function askForName() {
    if (!("titleModel" in document.body.dataset) || !messages) return;
    const replies = messages.querySelectorAll("article[data-role='assistant']");
    const id = document.getElementById("conversation-id")?.value;
    if (!id || named.has(id) || replies.length !== 1 || replies[0].dataset.status !== "complete") return;
    named.add(id);
    const before = document.getElementById("conversation-title")?.textContent;
    const attempt = async (left) => {
      try {
        const response = await fetch(`/streaming-demo/c/${id}/title`, { headers: { Accept: "application/json" } });
        const { title } = response.ok ? await response.json() : {};
        if (title && title !== before) {
          const heading = document.getElementById("conversation-title");
          const item = document.getElementById(`conversation-${id}`);
          if (heading) heading.textContent = title;
          if (item) item.textContent = title;
          document.title = `${title} · chatsite`;
          return;
        }
      } catch {
        // The name waits for the next page load.
      }
      if (left > 0) setTimeout(() => attempt(left - 1), 2000);
    };
    setTimeout(() => attempt(4), 1000);
  }
  if (messages) new MutationObserver(askForName).observe(messages, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-status"] });
})();
