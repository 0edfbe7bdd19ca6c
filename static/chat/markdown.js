// Markdown on the page: the live preview of a streaming reply, its maths typeset by math.js. The
// server renders the finished reply with markdown-it-py and the Python ports of the same plugins
// (chat/web/rendering.py); this file mirrors its options rule for rule, so the live and the final
// render agree (tests/e2e/test_markdown_parity.py compares the two DOMs).
(() => {
  "use strict";
  if (!window.markdownit || !window.DOMPurify || !window.texmath) return;
  const texmath = window.texmath;

  // Only a shortcut, as on the server: an opening delimiter with no closing one after it is not
  // maths, which the regular expression would find out by reading to the end of the text, once
  // per opening delimiter.
  const lastCloser = new Map(); // closer -> [text, where it last occurs]
  const closesLater = (closer) => (src, _outerSpace, begin) => {
    let known = lastCloser.get(closer);
    if (!known || known[0] !== src) lastCloser.set(closer, (known = [src, src.lastIndexOf(closer)]));
    return known[1] > begin + 1;
  };

  const restOfLineBlank = (src, end) => {
    const lineEnd = src.indexOf("\n", end + 1);
    return !src.slice(end + 1, lineEnd >= 0 ? lineEnd : src.length).trim();
  };

  // TeX in \(…\) and \[…\] (GPT-4o, the o-series, DeepSeek), built with markdown-it-texmath's
  // rule builders from the same rules as the server's (rendering.py: BRACKET_MATH_*): a display
  // formula is a block only when nothing follows it on its line, display maths within a
  // paragraph otherwise.
  const bracketInline = [
    { name: "math_inline_bracket", rex: /\\\((.+?)\\\)/gsy, tag: "\\(", pre: closesLater("\\)") },
    { name: "math_display_bracket", rex: /\\\[(.+?)\\\]/gsy, tag: "\\[", pre: closesLater("\\]") },
  ];
  // texmath's block rule reads its rule at each call; like the server's it must end within the
  // block being parsed, and in a quote on the line it starts.
  const bracketBlock = {
    name: "math_block_bracket",
    rex: /\\\[([\s\S]+?)\\\]/gmy,
    tag: "\\[",
    pre: closesLater("\\]"),
    post: (src, _outerSpace, end) =>
      restOfLineBlank(src, end) &&
      end <= bracketBlock.limit &&
      !(bracketBlock.inQuote && src.slice(bracketBlock.start, end).includes("\n")),
  };
  const bracketBlockRule = texmath.block(bracketBlock);
  function bracketMath(md) {
    for (const rule of bracketInline) md.inline.ruler.before("escape", rule.name, texmath.inline(rule));
    md.block.ruler.before("fence", bracketBlock.name, (state, begLine, endLine, silent) => {
      bracketBlock.start = state.bMarks[begLine] + state.tShift[begLine];
      bracketBlock.limit = state.eMarks[endLine - 1];
      bracketBlock.inQuote = state.parentType === "blockquote";
      return bracketBlockRule(state, begLine, endLine, silent);
    });
  }

  const md = window
    .markdownit("commonmark", { html: false })
    .enable(["table", "strikethrough"])
    .use(window.markdownitTaskLists, { label: true }) // the item's text labels its checkbox
    // `$5 and $6` stays text: a dollar next to a digit or a space neither opens nor closes math.
    // `$$…$$` within a line is display maths, as on a line of its own.
    .use(window.markdownitDollarmath.dollarmathPlugin, {
      allow_space: false,
      allow_digits: false,
      double_inline: true,
    })
    .use(bracketMath);

  // Every kind of maths comes out as one of three elements, as on the server (rendering.py:
  // _MATH_HTML); math.js typesets them.
  const MATH_HTML = {
    math_inline: ["span", "math inline"],
    math_inline_bracket: ["span", "math inline"],
    math_inline_double: ["span", "math display"],
    math_display_bracket: ["span", "math display"],
    math_block: ["div", "math block"],
    math_block_label: ["div", "math block"], // `$$…$$ (1)`: the label is not shown
    math_block_bracket: ["div", "math block"],
  };
  for (const [name, [tag, classes]] of Object.entries(MATH_HTML)) {
    md.renderer.rules[name] = (tokens, idx) =>
      `<${tag} class="${classes}">${md.utils.escapeHtml(tokens[idx].content.trim())}</${tag}>` +
      (tag === "div" ? "\n" : "");
  }

  md.renderer.rules.image = (tokens, idx, options, env, self) => {
    // As on the server: a reply never makes the browser fetch an image by itself.
    const token = tokens[idx];
    const alt = self.renderInline(token.children || [], options, env) || "image";
    return `<a href="${md.utils.escapeHtml(token.attrGet("src") || "")}">${alt}</a>`;
  };

  // A header bar above the code holds its language and the Copy button, which so never covers
  // a long line.
  for (const rule of ["fence", "code_block"]) {
    const original = md.renderer.rules[rule];
    md.renderer.rules[rule] = (tokens, idx, options, env, self) => {
      const token = tokens[idx];
      const info = token.info ? md.utils.unescapeAll(token.info).trim() : "";
      const language = info ? info.split(/\s+/g)[0] : "";
      return (
        '<div class="code-block"><div class="code-head">' +
        `<span class="code-lang">${md.utils.escapeHtml(language) || "code"}</span></div>` +
        `${original(tokens, idx, options, env, self)}</div>\n`
      );
    };
  }

  // Table cells say their alignment with a class: a strict CSP ignores inline style attributes.
  md.core.ruler.push("alignment_as_class", (state) => {
    for (const token of state.tokens) {
      if (token.type !== "th_open" && token.type !== "td_open") continue;
      const style = token.attrGet("style");
      if (!style) continue;
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      const match = /text-align:(left|right|center)/.exec(style);
      if (match) token.attrSet("class", `align-${match[1]}`);
    }
  });

  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      // Links open in a new tab, so following one never leaves the chat (as on the server).
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    } else if (node.tagName === "INPUT") {
      // Only task-list checkboxes come out of the renderer; they are never editable.
      node.setAttribute("type", "checkbox");
      node.setAttribute("disabled", "");
    } else if (node.tagName === "PRE") {
      // A code block that scrolls sideways must be reachable with a keyboard (as on the server).
      node.setAttribute("tabindex", "0");
    }
  });

  function sanitize(html) {
    return window.DOMPurify.sanitize(html, {
      RETURN_DOM_FRAGMENT: true,
      FORBID_TAGS: ["img", "style", "form", "button", "select", "textarea"],
      FORBID_ATTR: ["style", "id", "name"],
    });
  }

  function typeset(root) {
    if (window.chatsiteMath) window.chatsiteMath.typeset(root);
  }

  // The live preview of a streaming reply, in time proportional to what changed: the text only
  // grows, and a top-level block followed by another one can no longer change, so finished
  // blocks are rendered once and kept; each update parses and rebuilds only the last block.
  class LiveMarkdown {
    constructor(host) {
      this.host = host;
      this.offset = 0; // where the unfinished last block starts in the text
      this.length = -1;
      this.env = {}; // shared by every parse, so reference definitions carry over
      this.tail = []; // the nodes of the unfinished block
    }

    update(text) {
      if (text.length === this.length) return false;
      if (text.length < this.length) this.reset();
      this.length = text.length;
      const tail = text.slice(this.offset);
      const tokens = md.parse(tail, this.env);
      const starts = [];
      tokens.forEach((token, index) => {
        if (token.level === 0 && token.nesting >= 0 && token.map) starts.push(index);
      });
      let from = 0;
      if (starts.length > 1) {
        const last = starts[starts.length - 1];
        const done = this.fragment(tokens.slice(0, last));
        this.removeTail();
        this.host.append(done);
        this.offset += lineOffset(tail, tokens[last].map[0]);
        from = last;
      }
      this.removeTail();
      const fragment = this.fragment(tokens.slice(from));
      this.tail = Array.from(fragment.childNodes);
      this.host.append(fragment);
      this.placeCursor(text);
      return true;
    }

    fragment(tokens) {
      const fragment = sanitize(md.renderer.render(tokens, md.options, this.env));
      typeset(fragment);
      return fragment;
    }

    removeTail() {
      for (const node of this.tail) node.remove();
      this.tail = [];
    }

    reset() {
      this.host.replaceChildren();
      this.offset = 0;
      this.env = {};
      this.tail = [];
    }

    placeCursor(text) {
      // The cursor goes at the end of the last thing written, inside its paragraph or code
      // (never inside typeset math), and always within the unfinished block.
      if (!text.trim()) return;
      const cursor = document.createElement("span");
      cursor.className = "cursor";
      cursor.setAttribute("aria-hidden", "true");
      let target = this.tail.filter((node) => node.nodeType === Node.ELEMENT_NODE).pop();
      while (target && !target.classList.contains("math")) {
        const last = target.lastElementChild;
        if (!last || ["BR", "HR", "INPUT"].includes(last.tagName) || last.classList.contains("math")) break;
        target = last;
      }
      if (!target || target.classList.contains("math")) {
        this.host.append(cursor);
        this.tail.push(cursor);
      } else {
        target.append(cursor);
      }
    }
  }

  function lineOffset(text, line) {
    let offset = 0;
    for (let i = 0; i < line; i += 1) {
      const next = text.indexOf("\n", offset);
      if (next < 0) return text.length;
      offset = next + 1;
    }
    return offset;
  }

  function render(text) {
    const fragment = sanitize(md.render(text));
    typeset(fragment);
    return fragment;
  }

  window.chatsiteMarkdown = { LiveMarkdown, render, typeset };
})();
