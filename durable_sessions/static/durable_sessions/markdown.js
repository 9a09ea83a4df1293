/**
 * Markdown of AI and operator messages, made safe: marked (MIT) parses, DOMPurify
 * (Apache-2.0) sanitizes, both vendored from npm (tests/package.json pins them; see
 * vendor/*.LICENSE). Raw HTML in the text is shown as text, never parsed; images become
 * links (no request leaves the page by merely showing a message); links keep only http(s),
 * mailto and site-relative URLs and open in a new tab with rel="noopener noreferrer nofollow".
 *
 * The whole text so far is rendered again on each update: a streaming reply is a few
 * kilobytes, parsed in well under a millisecond, and half-written markdown (an open `**`
 * or code fence) simply shows as text until it is closed.
 */

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";

const ALLOWED_TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
  "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
];
const ALLOWED_ATTR = ["href", "title", "start"];
// http(s), mailto, or a path of this site ("/orders/7", not "//elsewhere"), or "#anchor".
const SAFE_URL = /^(?:https?:|mailto:|\/(?!\/)|#)/i;
const REL = "noopener noreferrer nofollow";

const escapeText = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const parser = new Marked({ gfm: true, breaks: true, async: false });
parser.use({
  renderer: {
    // Raw HTML blocks and inline tags are text, as the author typed them.
    html: ({ text }) => escapeText(text),
    // An image is a link to it, named by its alt text.
    image: ({ href, text }) => `<a href="${escapeText(href ?? "")}">${escapeText(text || href || "image")}</a>`,
  },
});

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    if (!node.hasAttribute("href")) return;
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", REL);
  }
});

/** The markdown `text` as a sanitized DocumentFragment. */
export function markdownFragment(text) {
  // Trimmed: no stray newline text node after the last block.
  const html = parser.parse(String(text ?? "")).trim();
  const fragment = purifier.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: SAFE_URL,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
  // A link whose URL was refused is its text, not a dead link.
  for (const link of fragment.querySelectorAll("a:not([href])")) link.replaceWith(...link.childNodes);
  return fragment;
}

/** Show `text` as markdown in `node` (replacing what it held). */
export function showMarkdown(node, text) {
  node.replaceChildren(markdownFragment(text));
  node.classList.add("md");
}
