// Maths on every page that shows a reply (the chat, a shared snapshot, the staff transcript):
// both renders leave TeX in `.math` elements (chat/web/rendering.py, chat/markdown.js), and
// KaTeX typesets them here, in display mode unless the element is `.inline`. What is already on
// the page is typeset once it has loaded; the chat typesets what it adds through `typeset`.
(() => {
  "use strict";

  function typeset(root) {
    if (!window.katex) return;
    root.querySelectorAll(".math:not([data-typeset])").forEach((element) => {
      const tex = element.textContent;
      element.dataset.typeset = "";
      element.dataset.tex = tex;
      try {
        // katex.render builds DOM nodes (styles through the CSSOM), which a strict CSP allows.
        window.katex.render(tex, element, {
          displayMode: !element.classList.contains("inline"),
          throwOnError: false,
          output: "htmlAndMathml",
        });
      } catch {
        element.textContent = tex;
      }
    });
  }

  window.chatsiteMath = { typeset };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => typeset(document));
  } else {
    typeset(document);
  }
})();
