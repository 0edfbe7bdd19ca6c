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
  let queuedWhileDown = false; // a message hx-ws holds until the socket opens
  let started = false; // the transport has started (after htmx's first pass over the page)

  const composer = () => document.getElementById("composer");
  const input = () => document.getElementById("message-input");

  function setState(state, label) {
    stateEl.dataset.state = state;
    stateEl.textContent = label;
    // The stylesheet pauses a streaming reply's cursor while the connection is away.
    document.body.dataset.connection = state;
    document.body.dataset.transport = transport;
    if (state === "connected" || state === "sse") {
      const status = document.getElementById("composer-status");
      if (status?.textContent.startsWith("Waiting for the connection")) status.textContent = "";
    }
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
    // The server answers a send with an event stream carrying the reply too (one request);
    // hx-sse reads it and swaps each event's fragments into the page.
    const stream = document.createElement("input");
    Object.assign(stream, { type: "hidden", name: "stream", value: "1" });
    form.append(stream);
    old.replaceWith(form);
    bindComposer(form);
    htmx.process(form);
    setState("sse", forced ? "Server-sent events" : "SSE fallback");
    openRoomStream();
    followAll();
    // The socket never opened, so the message it held was never sent: send it over HTTP.
    if (queuedWhileDown) {
      queuedWhileDown = false;
      form.requestSubmit(form.querySelector("#send-button"));
    }
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
    queuedWhileDown = false; // hx-ws sends its queue on open
    followed.clear();
    setState("connected", "Connected · WebSocket");
    joinRoom();
    followAll();
  });
  document.addEventListener("htmx:ws:close", (event) => {
    wsConnection = null;
    if (transport !== "ws") return;
    if (event.detail?.code === 4403) {
      removedFromRoom();
      return;
    }
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
  document.addEventListener("htmx:sse:close", (event) => {
    // The send's own stream has ended: a reply it left unfinished (the connection dropped) is
    // followed over GET from the offset the page has.
    if (event.target.id !== "composer") return;
    messages.querySelectorAll("[data-streamed]").forEach((reply) => reply.removeAttribute("data-streamed"));
    followAll();
  });

  // --- The live room of a shared conversation -------------------------------------------------
  // Who is here, who is typing and the other members' sends arrive as fragments: over the
  // socket once it has joined, or over the room's own event stream on SSE. The page's sends
  // carry its client id so the room does not echo them back to it.

  const roomClient = Math.random().toString(36).slice(2, 12);
  const TYPING_EVERY_MS = 2000; // at most one "typing" per this while keys are pressed
  const TYPING_SHOWN_MS = 5000; // "Ana is typing…" goes after this long without another
  let lastTyping = 0;

  document.addEventListener("htmx:config:request", (event) => {
    const headers = event.detail?.ctx?.request?.headers;
    if (headers) headers["X-Room-Client"] = roomClient;
  });

  function joinRoom() {
    const id = document.getElementById("conversation-id").value;
    const socket = wsConnection?.socket;
    if (!id || !chat.dataset.roomUrl || socket?.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ action: "join", conversation: id, client: roomClient }));
  }

  function openRoomStream() {
    const url = chat.dataset.roomUrl;
    if (!url || document.getElementById("room-stream")) return;
    const stream = document.createElement("div");
    stream.id = "room-stream";
    stream.hidden = true;
    stream.setAttribute("hx-sse:connect", `${url}?client=${roomClient}`);
    chat.append(stream);
    htmx.process(stream);
    // A person removed from the conversation: the stream says so and is not opened again.
    stream.addEventListener("removed", () => {
      stream.remove();
      removedFromRoom();
    });
  }

  // Removed from the conversation (the socket closed with 4403, or the room stream said so):
  // its replies no longer reach this page, so each one streaming here ends where it is and
  // says why, instead of blinking its cursor for ever. An event stream of the page goes with
  // the element it is on: hx-sse neither reads on nor reconnects once that has left the page.
  function removedFromRoom() {
    setState("offline", "Removed from this conversation");
    messages.querySelectorAll('[data-role="assistant"][data-status="streaming"]').forEach((reply) => {
      reply.dataset.status = "cut-off";
      reply.removeAttribute("data-events-url");
      reply.querySelectorAll(".cursor").forEach((cursor) => cursor.remove());
      const badge = document.createElement("span");
      badge.className = "badge badge-cut-off";
      badge.textContent = "Cut off";
      badge.title = "You are no longer a member of this conversation: the rest of this reply is not shown.";
      reply.querySelector(".msg-meta")?.prepend(badge);
    });
    messages.querySelectorAll("[hx-sse\\:connect]").forEach((element) => {
      const copy = element.cloneNode(true);
      copy.removeAttribute("hx-sse:connect");
      element.replaceWith(copy);
    });
  }

  // Whether the room shows who is here and who is typing: the owner may turn it off or on while
  // the page is open (the room then swaps #presence-state), and the page stops sending "typing".
  function presenceOn() {
    return document.getElementById("presence-state")?.dataset.presence === "on";
  }

  function sendTyping() {
    const id = document.getElementById("conversation-id").value;
    if (!id || !chat.dataset.roomUrl || !presenceOn()) return;
    const now = Date.now();
    if (now - lastTyping < TYPING_EVERY_MS) return;
    lastTyping = now;
    if (transport === "ws") {
      const socket = wsConnection?.socket;
      if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "typing", conversation: id }));
    } else {
      const token = document.querySelector("[name=csrfmiddlewaretoken]")?.value || "";
      fetch(chat.dataset.typingUrl, { method: "POST", headers: { "X-CSRFToken": token } }).catch(() => {});
    }
  }

  let typingTimer = null;
  let eventTimer = null;
  function roomLines() {
    // Shown for a few seconds: the typing line after its last refresh, a join or leave notice.
    const typing = document.getElementById("room-typing");
    if (typing && typing.textContent && typing.dataset.shownAt !== typing.dataset.seen) {
      typing.dataset.seen = typing.dataset.shownAt;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => (typing.textContent = ""), TYPING_SHOWN_MS);
    }
    const notice = document.getElementById("room-event");
    if (notice && notice.textContent && notice.dataset.shownAt !== notice.dataset.seen) {
      notice.dataset.seen = notice.dataset.shownAt;
      clearTimeout(eventTimer);
      eventTimer = setTimeout(() => (notice.textContent = ""), TYPING_SHOWN_MS);
    }
  }

  // --- Following streaming replies ------------------------------------------------------------

  function offsetOf(reply) {
    const text = reply.querySelector(".msg-text.streaming");
    const spans = text.querySelectorAll("span[data-seq]");
    return Number(spans.length ? spans[spans.length - 1].dataset.seq : text.dataset.seq || 0);
  }

  function follow(reply) {
    const id = reply.dataset.messageId;
    const text = reply.querySelector(".msg-text.streaming");
    if (!text || reply.hasAttribute("data-streamed")) return; // the send's response carries it
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
    if (!started) return; // the transport's start follows them
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

  // On a touch keyboard Enter is a new line, as people expect there; the Send button sends.
  const touchTyping = matchMedia("(pointer: coarse)").matches;

  function bindComposer(form) {
    const field = form.querySelector("#message-input");
    field.addEventListener("input", updateCount);
    field.addEventListener("input", sendTyping);
    // The System toggle shows whether a prompt is set, as it is typed or cleared.
    const prompt = form.querySelector("#system-prompt-input");
    const promptSet = form.querySelector(".system-prompt .prompt-set");
    prompt?.addEventListener("input", () => {
      if (promptSet) promptSet.hidden = !prompt.value.trim();
    });
    if (touchTyping) {
      field.enterKeyHint = "enter";
      field.placeholder = "Ask anything…";
    }
    field.addEventListener("keydown", (event) => {
      if (touchTyping) return;
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (isStreaming() && socketDown()) {
          say("The connection to the server is lost. The reply goes on (or ends) once it is back; then you can send.");
        } else if (isStreaming()) say("A reply is still being written. Press Escape or Stop to end it, then send.");
        else form.requestSubmit(form.querySelector("#send-button"));
      }
    });
    // While the socket is down, hx-ws queues the message and sends it once connected: say so.
    form.addEventListener("submit", (event) => {
      if (event.submitter?.id !== "send-button" || !socketDown() || !form.checkValidity()) return;
      queuedWhileDown = true;
      say("Waiting for the connection to the server — your message will be sent as soon as it is back.", {
        sticky: true,
      });
    });
    updateCount();
  }

  // --- Live Markdown while a reply streams ------------------------------------------------------
  // The server sends escaped plain text (the spans that also carry resume offsets); the page
  // shows it rendered, as the finished reply will be (markdown.js: markdown-it with the plugins
  // whose ports the server uses, sanitised by DOMPurify). Only the unfinished last block is
  // rebuilt per frame. The finished reply then arrives rendered by the server and replaces this.

  const markdown = window.chatsiteMarkdown || null;
  const liveViews = new WeakMap(); // raw text element -> its LiveMarkdown

  function renderLive(reply) {
    const raw = reply.querySelector(".msg-text.streaming");
    if (!raw) return;
    let view = liveViews.get(raw);
    if (!view) {
      const live = document.createElement("div");
      live.className = "msg-text markdown live";
      raw.after(live);
      reply.dataset.live = "";
      view = new markdown.LiveMarkdown(live);
      liveViews.set(raw, view);
    }
    if (view.update(raw.textContent)) {
      // For benchmarks/page_render.py: which frame's text is now on screen.
      document.dispatchEvent(
        new CustomEvent("chat:rendered", { detail: { messageId: reply.dataset.messageId, seq: offsetOf(reply) } }),
      );
    }
  }

  // --- Reacting to what the server swaps in ----------------------------------------------------

  let conversationId = document.getElementById("conversation-id").value;
  let stickToBottom = true;
  const scroller = messages;
  // Only the reader lets go of the bottom, by scrolling up: a scroll event that reports the view
  // short of the bottom because the reply grew after it was scrolled there (the event comes a
  // frame later) is not a reason to stop following.
  let lastTop = scroller.scrollTop;
  scroller.addEventListener("scroll", () => {
    const top = scroller.scrollTop;
    if (scroller.scrollHeight - top - scroller.clientHeight < 80) stickToBottom = true;
    else if (top < lastTop) stickToBottom = false;
    lastTop = top;
    updateJump();
  });

  // --- "↓ Latest": back to the bottom while a reply streams (or new text came) above it --------
  // Scrolled up to read, the view stays put as the reply grows; this button says there is more
  // below and takes the reader there. It hides at the bottom.
  const jump = document.getElementById("jump-latest");
  let seenCount = messages.children.length; // the messages there were when the reader last was at the bottom

  function updateJump({ grew = false } = {}) {
    if (!jump) return;
    if (stickToBottom) {
      seenCount = messages.children.length;
      jump.hidden = true;
    } else if (isStreaming() || grew) jump.hidden = false;
  }

  jump?.addEventListener("click", () => {
    scroller.scrollTop = scroller.scrollHeight;
    stickToBottom = true;
    updateJump();
    // The button is gone: the keyboard goes on from the composer (on a touch screen that
    // would open the keyboard, so not there).
    if (!touchTyping) input()?.focus({ preventScroll: true });
  });

  // A control that redraws its message (‹ ›, 👍/👎, Regenerate, Retry) keeps that message where
  // it was on the screen, and the keyboard focus on the same control (or, when that one is
  // gone or disabled, on another of the message's): the redraw replaced the elements, which
  // sent the focus to the body and, with the whole list redrawn, the view to the bottom.
  let anchor = null;
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const article = form.closest?.("#messages > article");
    if (!article || form.closest(".edit-form")) return;
    const control = event.submitter;
    anchor = {
      index: Array.prototype.indexOf.call(messages.children, article),
      article,
      form,
      top: article.getBoundingClientRect().top,
      control: control?.classList.length ? `.${[...control.classList].join(".")}` : null,
      until: Date.now() + 15000,
    };
  }, true);

  function restoreAnchor() {
    if (!anchor) return false;
    if (Date.now() > anchor.until) {
      anchor = null;
      return false;
    }
    const target = messages.children[anchor.index];
    if (!target || (target === anchor.article && anchor.form.isConnected)) return false; // not yet
    scroller.scrollTop += target.getBoundingClientRect().top - anchor.top;
    stickToBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    const active = document.activeElement;
    if (anchor.control && (!active || active === document.body)) {
      const control =
        target.querySelector(`${anchor.control}:not(:disabled)`) ||
        target.querySelector(".versions button:not(:disabled), .msg-actions button:not(:disabled)");
      control?.focus({ preventScroll: true });
    }
    anchor = null;
    return true;
  }

  function enhance(root) {
    root.querySelectorAll(".msg").forEach((reply) => {
      const blocks = reply.querySelectorAll(".markdown:not(.live) .code-block:not([data-enhanced])");
      if (!blocks.length) return;
      const all = Array.from(reply.querySelectorAll(".markdown:not(.live) .code-block"));
      blocks.forEach((block) => {
        block.dataset.enhanced = "1";
        const button = document.createElement("button");
        button.type = "button";
        button.className = "copy-code";
        button.textContent = "Copy";
        // Each button of a reply has its own name: "Copy code block 2", not a second "Copy".
        button.setAttribute("aria-label", `Copy code block ${all.indexOf(block) + 1}`);
        button.addEventListener("click", () => copy(block.querySelector("pre")?.innerText ?? "", button));
        block.querySelector(".code-head")?.append(button);
      });
    });
    if (markdown) markdown.typeset(root);
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

  // A reply's text as a reader sees it: without the code blocks' header bars, math as its TeX.
  function replyText(rendered) {
    const clone = rendered.cloneNode(true);
    clone.querySelectorAll(".code-head, .cursor").forEach((node) => node.remove());
    clone.querySelectorAll(".math[data-tex]").forEach((node) => {
      const tex = node.dataset.tex;
      node.replaceWith(node.classList.contains("block") ? `$$${tex}$$` : `$${tex}$`);
    });
    clone.classList.add("copy-buffer");
    document.body.append(clone); // innerText needs a rendered node to keep line breaks
    const text = clone.innerText;
    clone.remove();
    return text;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const rendered = button.closest(".msg")?.querySelector(".markdown");
    if (rendered) copy(replyText(rendered), button);
  });

  // --- Telling screen readers about replies ------------------------------------------------------
  // The message list is not aria-live (it would read every frame of a stream); a reply is read
  // once, when it ends, from a dedicated live region.
  const announcer = document.getElementById("reply-announcer");
  const watchedStreams = new Set(); // replies seen streaming on this page

  function announceEndings() {
    messages.querySelectorAll('[data-role="assistant"]').forEach((reply) => {
      const id = reply.dataset.messageId;
      if (reply.dataset.status === "streaming") {
        watchedStreams.add(id);
        return;
      }
      if (!watchedStreams.delete(id) || !announcer) return;
      const rendered = reply.querySelector(".markdown");
      const error = reply.querySelector(".msg-error")?.textContent || "";
      const badge = reply.querySelector(".badge")?.textContent || "";
      const text = rendered ? replyText(rendered).trim() : "";
      const parts = [`Assistant replied${badge ? ` (${badge.toLowerCase()})` : ""}:`, text, error];
      announcer.textContent = parts.filter(Boolean).join(" ");
    });
  }

  // --- The composer's status line: why Enter does not send right now --------------------------

  const statusEl = document.getElementById("composer-status");
  let statusTimer = null;

  function say(text, { sticky = false } = {}) {
    if (!statusEl) return;
    clearTimeout(statusTimer);
    statusEl.textContent = text;
    if (text && !sticky) statusTimer = setTimeout(() => (statusEl.textContent = ""), 6000);
  }

  function isStreaming() {
    return document.body.classList.contains("is-streaming");
  }

  function socketDown() {
    return transport === "ws" && !(wsConnection?.socket?.readyState === WebSocket.OPEN);
  }

  function stopReply() {
    const form = composer();
    const stop = form.querySelector("#stop-button");
    if (stop) form.requestSubmit(stop);
  }

  function afterChange() {
    const streaming = messages.querySelector('[data-status="streaming"]') !== null;
    document.body.classList.toggle("is-streaming", streaming);
    if (!streaming && statusEl?.textContent.startsWith("A reply is still")) say("");
    const fresh = messages.querySelector("[data-fresh]");
    if (fresh) {
      fresh.removeAttribute("data-fresh");
      input().value = "";
      updateCount();
      stickToBottom = true;
    }
    roomLines();
    const id = document.getElementById("conversation-id").value;
    if (id && id !== conversationId) {
      conversationId = id;
      history.replaceState(null, "", `/streaming-demo/c/${id}${location.search}`);
    }
    followTitle();
    enhance(messages);
    if (markdown) messages.querySelectorAll('[data-status="streaming"]').forEach(renderLive);
    announceEndings();
    followAll();
    const anchored = restoreAnchor();
    if (stickToBottom && !anchored) scroller.scrollTop = scroller.scrollHeight;
    updateJump({ grew: messages.children.length > seenCount });
  }

  // --- The tab's title follows the conversation's ------------------------------------------------
  // A rename here swaps #conversation-title (so does a generated title); the tab follows, and
  // tells this browser's other tabs, whose pages of the same conversation follow too.
  const titles = "BroadcastChannel" in window ? new BroadcastChannel("chatsite-titles") : null;
  let shownTitle = document.getElementById("conversation-title")?.textContent ?? "";

  function followTitle() {
    const heading = document.getElementById("conversation-title");
    if (!heading || !conversationId) return;
    const title = heading.textContent.trim();
    const wanted = `${title} · chatsite`;
    if (document.title !== wanted) document.title = wanted;
    if (title === shownTitle) return;
    shownTitle = title;
    titles?.postMessage({ conversation: conversationId, title });
  }

  titles?.addEventListener("message", (event) => {
    const { conversation, title } = event.data || {};
    const heading = document.getElementById("conversation-title");
    if (!heading || conversation !== conversationId || typeof title !== "string") return;
    shownTitle = title; // not told back to the tab it came from
    heading.textContent = title;
    document.title = `${title} · chatsite`;
  });

  let scheduled = false;
  const observer = new MutationObserver(() => {
    // Batch the many small appends of a streaming reply into one update per frame.
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      afterChange();
      observer.takeRecords(); // what afterChange itself changed needs no second pass
    });
  });
  observer.observe(chat, { childList: true, subtree: true, characterData: true });

  // --- A reply's figures, behind its (i) -----------------------------------------------------------
  // The footer keeps the controls on one line; model, time to first token, speed, tokens and cost
  // open in a small popover: on hover (a mouse), on a tap or Enter/Space (pinned until Escape, a
  // second press or a click elsewhere). The footers are the server's (redrawn when a reply ends),
  // so the listeners are the document's.

  let pinned = false;

  function openFigures() {
    return messages.querySelector(".msg-figures.open");
  }

  function closeFigures() {
    const open = openFigures();
    if (!open) return;
    open.classList.remove("open", "below", "start");
    open.closest(".msg-figures-wrap")?.querySelector(".figures-toggle")?.setAttribute("aria-expanded", "false");
    pinned = false;
  }

  function showFigures(toggle, { pin }) {
    const figures = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!figures) return;
    if (openFigures() !== figures) closeFigures();
    figures.classList.add("open");
    toggle.setAttribute("aria-expanded", "true");
    pinned = pin || pinned;
    // Kept on screen: opening rightwards when (i) is near the left edge, below it near the
    // list's top. (Classes, not inline styles: the CSP allows none, and htmx copies a swapped
    // element's style attribute.)
    const box = figures.getBoundingClientRect();
    if (box.left < 8) figures.classList.add("start");
    if (box.top < scroller.getBoundingClientRect().top) figures.classList.add("below");
  }

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest?.(".figures-toggle");
    if (toggle) {
      const expanded = toggle.getAttribute("aria-expanded") === "true";
      if (expanded && pinned) closeFigures();
      else showFigures(toggle, { pin: true });
    } else if (openFigures() && !event.target.closest?.(".msg-figures")) closeFigures();
  });
  document.addEventListener("pointerover", (event) => {
    const toggle = event.pointerType === "mouse" && event.target.closest?.(".figures-toggle");
    if (toggle && toggle.getAttribute("aria-expanded") !== "true") showFigures(toggle, { pin: false });
  });
  document.addEventListener("pointerout", (event) => {
    if (event.pointerType !== "mouse" || pinned) return;
    const wrap = event.target.closest?.(".msg-figures-wrap");
    if (wrap && !wrap.contains(event.relatedTarget)) closeFigures();
  });

  // --- The conversations drawer (phones) ----------------------------------------------------------

  const toggle = document.querySelector(".sidebar-toggle");
  const sidebar = document.getElementById("sidebar");

  function setDrawer(open) {
    document.body.classList.toggle("sidebar-open", open);
    toggle?.setAttribute("aria-expanded", String(open));
  }

  function drawerOpen() {
    return document.body.classList.contains("sidebar-open");
  }

  toggle?.addEventListener("click", () => setDrawer(!drawerOpen()));
  // A tap anywhere outside the open drawer closes it (and does nothing else).
  document.addEventListener(
    "click",
    (event) => {
      if (!drawerOpen() || sidebar.contains(event.target) || toggle?.contains(event.target)) return;
      event.preventDefault();
      event.stopPropagation();
      setDrawer(false);
    },
    true,
  );

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing) return;
    const open = openFigures();
    if (open) {
      event.preventDefault();
      closeFigures();
      open.closest(".msg-figures-wrap")?.querySelector(".figures-toggle")?.focus();
    } else if (drawerOpen()) {
      setDrawer(false);
      toggle?.focus();
    } else if (isStreaming()) {
      event.preventDefault();
      stopReply();
      say("Stopping the reply…");
    }
  });

  bindComposer(composer());
  afterChange();
  if (!location.hash) input()?.focus({ preventScroll: true });
  // The transport starts once htmx has made its first pass over the page: an element given
  // hx-sse:connect before that pass is connected by it a second time, and two event streams
  // show every token twice. htmx starts on a zero-delay timer set when its (deferred) script
  // ran, before this one; a timer set now fires after it.
  setTimeout(() => {
    started = true;
    if (transport === "ws") useWebSocket();
    else useSSE();
  });
})();
