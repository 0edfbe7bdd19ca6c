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
          if (item) {
            item.textContent = title;
            item.title = title;
            // Its row's ⋯ and rename field name it too.
            const row = item.closest(".conversation-row");
            row?.querySelector(".row-menu-button")?.setAttribute("aria-label", `Actions for “${title}”`);
            const field = row?.querySelector(".row-rename-form input[name=title]");
            if (field) {
              field.defaultValue = title;
              field.setAttribute("aria-label", `New name for “${title}”`);
            }
          }
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

  // --- A sidebar row's ⋯ menu: Rename (inline), Pin / Unpin, Archive, Delete. ---------------
  // The forms work without JavaScript (the menu opens in place while the row has focus); here
  // it is a menu button: arrows move, Escape closes it and returns to ⋯.
  const list = document.getElementById("conversation-list");
  const menuItems = (menu) => [...menu.querySelectorAll("[role=menuitem]")];
  let openMenu = null;

  function placeMenu(button, menu) {
    const box = button.getBoundingClientRect();
    const width = menu.offsetWidth;
    const height = menu.offsetHeight;
    const left = Math.max(8, Math.min(box.right - width, window.innerWidth - width - 8));
    const below = box.bottom + 4;
    const top = below + height > window.innerHeight - 8 ? Math.max(8, box.top - height - 4) : below;
    // On the root, which htmx never swaps: a style on the menu would be copied by htmx's settle
    // onto the swapped-in row, which the page's CSP (no inline styles) refuses.
    document.documentElement.style.setProperty("--row-menu-left", `${left}px`);
    document.documentElement.style.setProperty("--row-menu-top", `${top}px`);
  }

  function closeMenu({ focusButton = false } = {}) {
    if (!openMenu) return;
    const { button, menu } = openMenu;
    openMenu = null;
    menu.classList.remove("open");
    button.setAttribute("aria-expanded", "false");
    if (focusButton) button.focus();
  }

  function showMenu(button, { focus = "first" } = {}) {
    closeMenu();
    const menu = document.getElementById(button.getAttribute("aria-controls"));
    if (!menu) return;
    menu.classList.add("open");
    button.setAttribute("aria-expanded", "true");
    placeMenu(button, menu);
    openMenu = { button, menu };
    const items = menuItems(menu);
    (focus === "last" ? items[items.length - 1] : items[0])?.focus();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest?.(".row-menu-button");
    if (button) {
      const wasOpen = openMenu?.button === button;
      closeMenu();
      if (!wasOpen) showMenu(button);
      return;
    }
    if (openMenu && !openMenu.menu.contains(event.target)) closeMenu();
  });

  document.addEventListener("keydown", (event) => {
    const button = event.target.closest?.(".row-menu-button");
    if (button && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      event.preventDefault();
      showMenu(button, { focus: event.key === "ArrowUp" ? "last" : "first" });
      return;
    }
    if (!openMenu || !openMenu.menu.contains(event.target)) return;
    const items = menuItems(openMenu.menu);
    const at = items.indexOf(event.target);
    const move = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[event.key];
    if (move !== undefined) {
      event.preventDefault();
      items[(move + items.length) % items.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closeMenu({ focusButton: true });
    } else if (event.key === "Tab") {
      closeMenu({ focusButton: true });
    } else if (event.key === " " && event.target.matches("a")) {
      event.preventDefault();
      event.target.click();
    }
  }, true);

  // The menu is fixed to the window: it follows nothing when the list scrolls, so it closes.
  list?.addEventListener("scroll", () => closeMenu(), { passive: true });
  window.addEventListener("resize", () => closeMenu());

  // Rename in the row: Enter saves (the form posts), Escape or leaving the field cancels.
  function startRename(row) {
    const form = row.querySelector(".row-rename-form");
    if (!form) return;
    form.hidden = false;
    const field = form.querySelector("input[name=title]");
    field.focus();
    field.select();
  }
  function cancelRename(row, { focusButton = true } = {}) {
    const form = row.querySelector(".row-rename-form");
    if (!form || form.hidden) return;
    form.reset();
    form.hidden = true;
    if (focusButton) row.querySelector(".row-menu-button")?.focus();
  }
  document.addEventListener("click", (event) => {
    const rename = event.target.closest?.(".row-rename");
    if (!rename) return;
    event.preventDefault();
    closeMenu();
    startRename(rename.closest(".conversation-row"));
  });
  document.addEventListener("keydown", (event) => {
    const form = event.target.closest?.(".row-rename-form");
    if (form && event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancelRename(form.closest(".conversation-row"));
    }
  }, true);
  document.addEventListener("focusout", (event) => {
    const form = event.target.closest?.(".row-rename-form");
    if (form && !form.contains(event.relatedTarget) && !form.dataset.sending) {
      cancelRename(form.closest(".conversation-row"), { focusButton: false });
    }
  });

  // Where focus goes once the list is swapped after a row's action: the same row's ⋯ when the
  // row is still there (renamed, pinned, moved), else the row that took its place.
  let pendingFocus = null;
  // Called on the form's submit and on htmx's request (htmx may take a button's click before
  // any submit event): whichever comes first.
  function rowActionStarting(form) {
    const row = form?.closest?.(".conversation-row");
    if (!row || !list?.contains(row)) return;
    const next = form.querySelector("input[name=next]");
    if (next) next.value = location.pathname;  // a plain post (Delete) comes back here
    if (form.matches(".row-rename-form")) form.dataset.sending = "1";
    const rows = [...list.querySelectorAll(".conversation-row")];
    const at = rows.indexOf(row);
    pendingFocus = {
      id: row.dataset.conversationId,
      fallback: (rows[at + 1] || rows[at - 1])?.dataset.conversationId,
      stale: new Set(list.querySelectorAll(".row-menu-button, .conversation-item")),
    };
    closeMenu();
  }
  document.addEventListener("submit", (event) => rowActionStarting(event.target), true);
  document.addEventListener("htmx:before:request", (event) => {
    const form = event.target.closest?.("form");
    if (pendingFocus?.id !== form?.closest(".conversation-row")?.dataset.conversationId) {
      rowActionStarting(form);
    }
  });
  if (list) {
    new MutationObserver(() => {
      if (!pendingFocus) return;
      const { id, fallback, stale } = pendingFocus;
      // Only the swapped-in list: the row's button, not the one the action came from.
      const same = document.getElementById(`row-menu-button-${id}`);
      const other = fallback && document.querySelector(`#row-${CSS.escape(fallback)} .conversation-item`);
      const target = [same, other].find((element) => element && !stale.has(element));
      if (!target) return;
      pendingFocus = null;
      // htmx settles the swapped rows a moment later (until then they carry the old rows'
      // classes): try until focus holds, unless the person has moved on.
      let tries = 20;
      const place = () => {
        target.focus();
        if (document.activeElement !== target && document.activeElement === document.body && tries-- > 0) {
          setTimeout(place, 20);
        }
      };
      place();
      const heading = document.getElementById("conversation-title");
      if (heading && document.getElementById("conversation-id")?.value === id) {
        document.title = `${heading.textContent} · chatsite`;
      }
    }).observe(list, { childList: true });
  }
  // A refused rename (an empty name) leaves the field open to fix.
  document.addEventListener("htmx:after:request", (event) => {
    const form = event.target.closest?.(".row-rename-form");
    if (form) delete form.dataset.sending;
  });
})();
