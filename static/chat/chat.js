// chatsite page behaviour. htmx does the swapping; this file picks the transport (WebSocket,
// or SSE when the socket cannot connect), asks to follow streaming replies from the offset the
// page already has, and adds the small comforts of a chat box.
(() => {
  "use strict";
  const FALLBACK_AFTER_MS = 4000;
  const chat = document.getElementById("chat");
  const messages = document.getElementById("messages");
  const stateEl = document.getElementById("connection-state");
  if (!chat || !messages) return;

  const forced = new URLSearchParams(location.search).get("transport") === "sse";
  let transport = forced ? "sse" : "ws";
  let wsConnection = null; // hx-ws's connection object while the socket is open
  let wsEverOpen = false;
  let fallbackTimer = null;
  const followed = new Set(); // replies followed over the current socket

  const composer = () => document.getElementById("composer");
  const input = () => document.getElementById("message-input");

  function setState(state, label) {
    stateEl.dataset.state = state;
    stateEl.textContent = label;
    document.body.dataset.transport = transport;
  }

  // --- Transports ------------------------------------------------------------------------------

  function useWebSocket() {
    chat.setAttribute("hx-ws:connect", chat.dataset.wsUrl);
    composer().setAttribute("hx-ws:send", "");
    setState("connecting", "Connecting…");
    fallbackTimer = setTimeout(() => {
      if (!wsEverOpen) useSSE();
    }, FALLBACK_AFTER_MS);
    htmx.process(chat);
  }

  function useSSE() {
    clearTimeout(fallbackTimer);
    transport = "sse";
    chat.removeAttribute("hx-ws:connect");
    const socket = chat._htmx?.ws?.connection?.socket;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
    // A fresh copy of the form drops hx-ws's submit listener; it posts over HTTP instead.
    const old = composer();
    const form = old.cloneNode(true);
    form.querySelectorAll("textarea, select").forEach((field) => {
      const original = old.querySelector(`[name="${field.name}"]`);
      if (original) field.value = original.value;
    });
    form.removeAttribute("hx-ws:send");
    form.setAttribute("hx-post", old.getAttribute("action"));
    form.setAttribute("hx-swap", "none");
    old.replaceWith(form);
    bindComposer(form);
    htmx.process(form);
    setState("sse", forced ? "Server-sent events" : "SSE fallback");
    followAll();
  }

  document.addEventListener("htmx:ws:before:connection", (event) => {
    // Once on SSE, hx-ws's reconnect attempts are cancelled.
    if (transport !== "ws") {
      event.detail.connection.cancelled = true;
      event.preventDefault();
    }
  });
  document.addEventListener("htmx:ws:after:connection", (event) => {
    clearTimeout(fallbackTimer);
    wsEverOpen = true;
    wsConnection = event.detail.connection;
    followed.clear();
    setState("connected", "Connected · WebSocket");
    followAll();
  });
  document.addEventListener("htmx:ws:close", () => {
    wsConnection = null;
    if (transport !== "ws") return;
    if (!wsEverOpen) useSSE();
    else setState("reconnecting", document.hidden ? "Paused (tab hidden)" : "Reconnecting…");
  });
  document.addEventListener("htmx:ws:error", () => {
    if (transport === "ws" && !wsEverOpen) useSSE();
  });
  document.addEventListener("htmx:sse:error", () => {
    if (transport === "sse") setState("reconnecting", "Reconnecting…");
  });
  document.addEventListener("htmx:sse:after:connection", () => {
    if (transport === "sse") setState("sse", forced ? "Server-sent events" : "SSE fallback");
  });

  // --- Following streaming replies ------------------------------------------------------------

  function offsetOf(reply) {
    const text = reply.querySelector(".msg-text.streaming");
    const spans = text.querySelectorAll("span[data-seq]");
    return Number(spans.length ? spans[spans.length - 1].dataset.seq : text.dataset.seq || 0);
  }

  function follow(reply) {
    const id = reply.dataset.messageId;
    const text = reply.querySelector(".msg-text.streaming");
    if (!text) return;
    if (transport === "ws") {
      const socket = wsConnection?.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN || followed.has(id)) return;
      followed.add(id);
      socket.send(JSON.stringify({ action: "watch", message_id: id, after: offsetOf(reply) }));
    } else if (!text.hasAttribute("hx-sse:connect")) {
      text.setAttribute("hx-sse:connect", `${reply.dataset.eventsUrl}?after=${offsetOf(reply)}`);
      htmx.process(text);
    }
  }

  function followAll() {
    messages
      .querySelectorAll('[data-role="assistant"][data-status="streaming"]')
      .forEach(follow);
  }

  // --- The composer -----------------------------------------------------------------------------

  function updateCount() {
    const field = input();
    const counter = document.getElementById("char-count");
    const max = Number(field.dataset.max);
    counter.textContent = `${field.value.length.toLocaleString()} / ${max.toLocaleString()}`;
    counter.classList.toggle("near-limit", field.value.length > max * 0.9);
  }

  function bindComposer(form) {
    const field = form.querySelector("#message-input");
    field.addEventListener("input", updateCount);
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (document.body.classList.contains("is-streaming")) return;
        form.requestSubmit(form.querySelector("#send-button"));
      }
    });
    updateCount();
  }

  // --- Live Markdown while a reply streams ------------------------------------------------------
  // The server sends escaped plain text (the spans that also carry resume offsets); the page
  // shows it rendered, as the finished reply will be: markdown-it is the original of the server's
  // markdown-it-py, with the same options, and DOMPurify sanitises what it produces. The
  // finished reply then arrives rendered (and highlighted) by the server and replaces all this.

  const markdown = window.markdownit && window.DOMPurify ? makeMarkdown() : null;

  function makeMarkdown() {
    const md = window.markdownit("commonmark", { html: false }).enable(["table", "strikethrough"]);
    md.renderer.rules.image = (tokens, idx, options, env, self) => {
      // As on the server: a reply never makes the browser fetch an image by itself.
      const token = tokens[idx];
      const alt = self.renderInline(token.children || [], options, env) || "image";
      return `<a href="${md.utils.escapeHtml(token.attrGet("src") || "")}">${alt}</a>`;
    };
    return md;
  }

  function renderLive(reply) {
    const raw = reply.querySelector(".msg-text.streaming");
    let live = reply.querySelector(".msg-text.live");
    if (!live) {
      live = document.createElement("div");
      live.className = "msg-text markdown live";
      raw.after(live);
      reply.dataset.live = "";
    }
    const text = raw.textContent;
    if (live.dataset.length === String(text.length)) return;
    live.dataset.length = String(text.length);
    live.innerHTML = DOMPurify.sanitize(markdown.render(text), {
      FORBID_TAGS: ["img", "style", "form", "input"],
    });
    // The cursor goes at the end of the last thing written, inside its paragraph or code.
    let tail = live;
    while (tail.lastElementChild && !["BR", "HR"].includes(tail.lastElementChild.tagName)) {
      tail = tail.lastElementChild;
    }
    if (tail !== live || text) tail.append(Object.assign(document.createElement("span"), { className: "cursor" }));
  }

  // --- Reacting to what the server swaps in ----------------------------------------------------

  let conversationId = document.getElementById("conversation-id").value;
  let stickToBottom = true;
  const scroller = messages;
  scroller.addEventListener("scroll", () => {
    stickToBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  });

  function enhance(root) {
    root.querySelectorAll(".markdown:not(.live) pre:not([data-enhanced])").forEach((pre) => {
      pre.dataset.enhanced = "1";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy";
      button.addEventListener("click", () => copy(pre.querySelector("code")?.innerText ?? pre.innerText, button));
      pre.append(button);
    });
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const text = button.closest(".msg")?.querySelector(".markdown");
    if (text) copy(text.innerText, button);
  });

  function afterChange() {
    const streaming = messages.querySelector('[data-status="streaming"]') !== null;
    document.body.classList.toggle("is-streaming", streaming);
    const fresh = messages.querySelector("[data-fresh]");
    if (fresh) {
      fresh.removeAttribute("data-fresh");
      input().value = "";
      updateCount();
      stickToBottom = true;
    }
    const id = document.getElementById("conversation-id").value;
    if (id && id !== conversationId) {
      conversationId = id;
      history.replaceState(null, "", `/streaming-demo/c/${id}${location.search}`);
      document.title = `${document.getElementById("conversation-title").textContent} · chatsite`;
    }
    enhance(messages);
    if (markdown) messages.querySelectorAll('[data-status="streaming"]').forEach(renderLive);
    followAll();
    if (stickToBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  let scheduled = false;
  new MutationObserver(() => {
    // Batch the many small appends of a streaming reply into one update per frame.
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      afterChange();
    });
  }).observe(chat, { childList: true, subtree: true, characterData: true });

  document.querySelector(".sidebar-toggle")?.addEventListener("click", () => {
    document.body.classList.toggle("sidebar-open");
  });

  bindComposer(composer());
  afterChange();
  if (transport === "ws") useWebSocket();
  else useSSE();
})();
