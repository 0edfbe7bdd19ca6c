// Attaching files in the composer: the attach button, dropping files on the chat and pasting an
// image. Each file becomes a chip above the message box and uploads at once (XMLHttpRequest, for
// its upload progress: htmx sends with fetch, which has none). An uploaded file's chip holds a
// hidden `attachment` input with its id, so the send carries it whichever way it goes (the
// WebSocket frame, htmx's POST). A refused file keeps the server's words on its chip and is never
// sent. Everything is found through the page each time, and events are caught on the document:
// the SSE fallback replaces the form with a copy (chat.js), chips and all.
(() => {
  "use strict";
  const initial = document.getElementById("composer");
  if (!initial || !initial.dataset.uploadUrl) return;

  const uploadUrl = initial.dataset.uploadUrl;
  const maxFiles = Number(initial.dataset.maxFiles) || 10;
  const maxBytes = Number(initial.dataset.maxBytes) || 0;
  const uploads = new Map(); // chip key -> its XMLHttpRequest while uploading
  const previews = new Map(); // chip key -> the object URL of its image preview
  let nextKey = 0;
  let sendWaiting = false; // Send was pressed while files were uploading
  let statusTimer = null;

  const composer = () => document.getElementById("composer");
  const chipList = () => document.getElementById("attachment-chips");
  const chipOf = (key) => chipList()?.querySelector(`[data-key="${key}"]`);

  // With JavaScript the files go up one by one as they are chosen, not with the message: the
  // file input loses its name (so no form posts it) and the form its multipart encoding.
  const form = composer();
  form.querySelector("#attach-input")?.removeAttribute("name");
  form.removeAttribute("enctype");
  form.dataset.attachEnhanced = "";

  // The server's words (chat/web/attachment_views.py), so a file refused here reads the same.
  function sizeWords(size) {
    if (size < 1024 * 1024) return size >= 1024 ? `${Math.round(size / 1024)} KB` : `${size} bytes`;
    return `${(size / (1024 * 1024)).toFixed(1)} MB`.replace(".0 MB", " MB");
  }

  function say(text, { sticky = false } = {}) {
    const status = document.getElementById("composer-status");
    if (!status) return;
    clearTimeout(statusTimer);
    status.textContent = text;
    if (text && !sticky) statusTimer = setTimeout(() => (status.textContent = ""), 6000);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A document's chip shows its kind by its extension ("PDF", "MD"), as file lists do.
  function fileIcon(name) {
    const extension = /\.([A-Za-z0-9]{1,4})$/.exec(name)?.[1] || "file";
    const icon = element("span", "chip-icon", extension.toUpperCase());
    icon.setAttribute("aria-hidden", "true");
    return icon;
  }

  function chips() {
    return Array.from(chipList()?.querySelectorAll(".chip") ?? []);
  }

  function uploading() {
    return chips().filter((chip) => chip.dataset.state === "uploading").length;
  }

  // --- Adding files ------------------------------------------------------------------------------

  function addFiles(files) {
    const list = chipList();
    if (!list) return;
    for (const original of files) {
      // A pasted screenshot has no useful name of its own.
      const file =
        original.name && original.name !== "image.png"
          ? original
          : new File([original], `Pasted image ${new Date().toLocaleTimeString().replaceAll(":", ".")}.png`, {
              type: original.type,
            });
      const key = String(++nextKey);
      const chip = element("li", "chip");
      chip.dataset.key = key;
      chip.dataset.state = "uploading";
      chip.dataset.kind = file.type.startsWith("image/") ? "image" : "document";
      if (chip.dataset.kind === "image") {
        const url = URL.createObjectURL(file);
        previews.set(key, url);
        const thumb = element("img", "chip-thumb");
        thumb.alt = "";
        thumb.src = url;
        chip.append(thumb);
      } else {
        chip.append(fileIcon(file.name));
      }
      const body = element("span", "chip-body");
      const name = element("span", "chip-name", file.name);
      name.title = file.name;
      body.append(name, element("span", "chip-size", sizeWords(file.size)));
      chip.append(body);
      const remove = element("button", "chip-remove", "✕");
      remove.type = "button";
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      remove.title = `Remove ${file.name}`;
      chip.append(remove);
      list.append(chip);
      const counted = chips().filter((c) => c.dataset.state !== "refused").length;
      if (counted > maxFiles) {
        refuse(
          chip,
          `A message can carry at most ${maxFiles} file${maxFiles === 1 ? "" : "s"}; this one has ${counted}. Remove some and send again.`,
        );
      } else if (maxBytes && file.size > maxBytes) {
        refuse(
          chip,
          `This file is ${sizeWords(file.size)}: more than the ${sizeWords(maxBytes)} allowed. Attach a smaller file.`,
        );
      } else if (!file.size) {
        refuse(chip, "The file is empty.");
      } else {
        upload(key, file);
      }
    }
    update();
  }

  function upload(key, file) {
    const chip = chipOf(key);
    const progress = element("progress", "chip-progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", `Uploading ${file.name}`);
    chip.querySelector(".chip-body").append(progress);
    const request = new XMLHttpRequest();
    uploads.set(key, request);
    request.open("POST", uploadUrl);
    const token = document.querySelector("[name=csrfmiddlewaretoken]")?.value || "";
    request.setRequestHeader("X-CSRFToken", token);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      const bar = chipOf(key)?.querySelector(".chip-progress");
      // The last few percent wait for the server to read the file.
      if (bar && event.lengthComputable) bar.value = Math.min(95, (event.loaded / event.total) * 100);
    });
    request.addEventListener("load", () => {
      uploads.delete(key);
      const chip = chipOf(key);
      if (!chip) return;
      const answer = request.response || {};
      if (request.status === 201 && answer.id) ready(chip, answer);
      else refuse(chip, answer.error || `The file could not be attached (error ${request.status}). Try again.`);
      settled();
    });
    request.addEventListener("error", () => {
      uploads.delete(key);
      const chip = chipOf(key);
      if (chip) refuse(chip, "The file could not be uploaded: the connection to the server was lost. Try again.");
      settled();
    });
    const body = new FormData();
    body.append("file", file, file.name);
    request.send(body);
  }

  function ready(chip, answer) {
    chip.dataset.state = "ready";
    chip.dataset.kind = answer.kind === "image" ? "image" : "document";
    chip.querySelector(".chip-progress")?.remove();
    const field = element("input");
    Object.assign(field, { type: "hidden", name: "attachment" });
    field.setAttribute("value", answer.id);
    chip.append(field);
    const thumb = chip.querySelector(".chip-thumb");
    if (thumb && answer.thumbnail_url) {
      // The server's thumbnail (EXIF gone, orientation applied) replaces the local preview.
      thumb.src = answer.thumbnail_url;
      forget(chip.dataset.key);
    }
    if (answer.included) {
      const note = element("span", "chip-note", `The model reads ${answer.included}`);
      chip.querySelector(".chip-body").append(note);
    }
    update();
  }

  function refuse(chip, words) {
    uploads.get(chip.dataset.key)?.abort();
    uploads.delete(chip.dataset.key);
    chip.dataset.state = "refused";
    // Not an image the server could read: no preview of it either.
    const thumb = chip.querySelector(".chip-thumb");
    if (thumb) {
      thumb.replaceWith(fileIcon(chip.querySelector(".chip-name").textContent));
      forget(chip.dataset.key);
    }
    chip.querySelector(".chip-progress")?.remove();
    chip.querySelector("input[name=attachment]")?.remove();
    const note = element("span", "chip-note chip-error", words);
    note.setAttribute("role", "alert");
    chip.querySelector(".chip-body").append(note);
    if (sendWaiting) {
      sendWaiting = false;
      say(`Not sent: ${chip.querySelector(".chip-name").textContent} could not be attached. Remove it, then send.`, {
        sticky: true,
      });
    }
    update();
  }

  function forget(key) {
    const url = previews.get(key);
    if (url) URL.revokeObjectURL(url);
    previews.delete(key);
  }

  function removeChip(chip) {
    const key = chip.dataset.key;
    uploads.get(key)?.abort();
    uploads.delete(key);
    forget(key);
    const all = chips();
    const index = all.indexOf(chip);
    const neighbour = all[index + 1] || all[index - 1];
    chip.remove();
    // Focus stays in the chips while there are some, then goes back to the message.
    const target = neighbour?.querySelector(".chip-remove") || document.getElementById("message-input");
    target?.focus();
    update();
    settled();
  }

  function clearChips() {
    chips().forEach((chip) => {
      uploads.get(chip.dataset.key)?.abort();
      uploads.delete(chip.dataset.key);
      forget(chip.dataset.key);
      chip.remove();
    });
    update();
  }

  // An upload ended (or a chip went): a send waiting for it goes now.
  function settled() {
    if (!sendWaiting || uploading()) return;
    sendWaiting = false;
    say("");
    const form = composer();
    form?.requestSubmit(form.querySelector("#send-button"));
  }

  function update() {
    const list = chipList();
    if (!list) return;
    const all = chips();
    list.hidden = all.length === 0;
    // Files alone are a message too.
    const field = document.getElementById("message-input");
    const anyReady = all.some((chip) => chip.dataset.state === "ready");
    if (field) field.required = !anyReady;
    composer()?.toggleAttribute("data-uploading", uploading() > 0);
  }

  // --- Where files come from ---------------------------------------------------------------------

  document.addEventListener("change", (event) => {
    if (event.target.id !== "attach-input") return;
    addFiles(Array.from(event.target.files));
    event.target.value = ""; // the same file may be chosen again
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest?.(".chip-remove");
    if (button) removeChip(button.closest(".chip"));
  });

  document.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData?.files ?? []);
    if (!files.length || !composer()) return;
    event.preventDefault(); // an image copied from a page comes with its HTML too
    addFiles(files);
  });

  // Dropping files anywhere on the page; the drop zone shows while files are dragged over it.
  let dragDepth = 0;
  const carriesFiles = (event) => Array.from(event.dataTransfer?.types ?? []).includes("Files");
  const dropZone = () => document.getElementById("drop-zone");
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    dragDepth += 1;
    const zone = dropZone();
    if (zone) zone.hidden = false;
  });
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0 && dropZone()) dropZone().hidden = true;
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event) && !event.dataTransfer?.files?.length) return;
    event.preventDefault();
    dragDepth = 0;
    if (dropZone()) dropZone().hidden = true;
    addFiles(Array.from(event.dataTransfer.files));
    document.getElementById("message-input")?.focus();
  });

  // --- Sending -----------------------------------------------------------------------------------

  // Caught before htmx and hx-ws see the submit: a send waits for the uploads in progress (and
  // goes by itself once they are done), and says so.
  document.addEventListener(
    "submit",
    (event) => {
      if (event.target.id !== "composer" || event.submitter?.id === "stop-button") return;
      const left = uploading();
      if (!left) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      sendWaiting = true;
      say(
        `Waiting for ${left === 1 ? "a file" : `${left} files`} to finish uploading — the message is sent as soon as ${left === 1 ? "it is" : "they are"} done.`,
        { sticky: true },
      );
    },
    true,
  );

  // The send went out (the page shows the new message): its files went with it.
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.matches("[data-fresh]") || node.querySelector("[data-fresh]")) {
          clearChips();
          return;
        }
      }
    }
  }).observe(document.getElementById("messages") || document.body, { childList: true, subtree: true });

  update();
})();
