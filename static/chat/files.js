// Files in sent messages: an image's thumbnail opens a larger view in a modal <dialog> with its
// name, a Download link and a Close button. Escape closes it (the dialog's own cancel), and
// focus goes back to the thumbnail that opened it. One dialog, made on first use; messages
// that arrive later (WebSocket, SSE, HTMX swaps) need nothing, as clicks are delegated.
(function () {
  "use strict";
  var dialog = null;
  var opener = null;

  function build() {
    dialog = document.createElement("dialog");
    dialog.className = "file-dialog";
    dialog.setAttribute("aria-labelledby", "file-dialog-name");
    dialog.innerHTML =
      '<div class="file-dialog-bar"><h2 class="file-dialog-name" id="file-dialog-name"></h2>' +
      '<a class="file-dialog-download" download>Download</a>' +
      '<button type="button" class="file-dialog-close" aria-label="Close">Close</button></div>' +
      '<img class="file-dialog-image" alt="">';
    dialog.querySelector(".file-dialog-close").addEventListener("click", function () {
      dialog.close();
    });
    // A click on the backdrop (outside the dialog's box) closes it too.
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", function () {
      dialog.querySelector(".file-dialog-image").removeAttribute("src");
      if (opener && document.contains(opener)) opener.focus();
      opener = null;
    });
    document.body.appendChild(dialog);
  }

  function open(button) {
    if (!dialog) build();
    var name = button.getAttribute("data-name") || "Image";
    var url = button.getAttribute("data-full");
    var image = dialog.querySelector(".file-dialog-image");
    dialog.querySelector(".file-dialog-name").textContent = name;
    dialog.querySelector(".file-dialog-download").setAttribute("href", url);
    dialog.querySelector(".file-dialog-download").setAttribute("aria-label", "Download " + name);
    image.setAttribute("alt", name);
    if (button.getAttribute("data-width")) {
      image.setAttribute("width", button.getAttribute("data-width"));
      image.setAttribute("height", button.getAttribute("data-height"));
    } else {
      image.removeAttribute("width");
      image.removeAttribute("height");
    }
    image.setAttribute("src", url);
    opener = button;
    dialog.showModal();
    dialog.querySelector(".file-dialog-close").focus();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-file-open]");
    if (!button) return;
    event.preventDefault();
    open(button);
  });
})();
