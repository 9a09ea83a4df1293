/**
 * Keyboard shortcuts of a session page, as support tools have them: single keys when no
 * text box has the focus (`j`/`k` between conversations, `t` take over, `r` reply, `n` note,
 * `h` hand back, `?` this help), `Esc` to leave a text box or close the help.
 */

const EDITABLE = "input, textarea, select, [contenteditable='true']";

/**
 * @param {object} keys a map from a key (`event.key`) to what it does.
 * @param {HTMLDialogElement} help the help overlay.
 */
export function bindShortcuts(keys, help) {
  const showHelp = () => {
    if (!help.open) help.showModal();
  };
  document.getElementById("show-shortcuts")?.addEventListener("click", showHelp);
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof Element && target.closest(EDITABLE)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (help.open) return; // the dialog handles its own keys (Esc closes it)
    // Arrows keep scrolling whatever scrolls, except on the page itself or in the list.
    const page = target === document.body || target === document.documentElement;
    if (event.key.startsWith("Arrow") && !page && !target.closest?.(".inbox-list")) return;
    const action = event.key === "?" ? showHelp : keys[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });
}
