/**
 * Translated text for the browser modules of durable_sessions and handoff_console (the
 * console imports this file too).
 *
 * The page loads Django's JavaScript catalog for its language as a script file (the
 * `javascript-catalog` URL; no inline script, so the Content-Security-Policy holds) before
 * its modules run. These functions read that catalog and fall back to the English text on
 * a page without one, so a host that translates nothing needs nothing.
 *
 * Placeholders are named, `%(count)s`, so that a translation may reorder them.
 */

const catalog = () => globalThis.django ?? null;

/** `text` in the page's language. */
export function gettext(text) {
  return catalog()?.gettext?.(text) ?? text;
}

/** `singular` or `plural` (or a language's other forms) for the number `count`. */
export function ngettext(singular, plural, count) {
  const django = catalog();
  if (django?.ngettext) return django.ngettext(singular, plural, count);
  return count === 1 ? singular : plural;
}

/** `text` in the page's language where the same English word means different things. */
export function pgettext(context, text) {
  return catalog()?.pgettext?.(context, text) ?? text;
}

/** Fill the named placeholders of a translated text: `format("%(n)s left", { n: 2 })`. */
export function format(text, values) {
  return text.replace(/%\(([a-z_]+)\)s/g, (match, name) => (name in values ? String(values[name]) : match));
}

/** The page's language (its `<html lang>`), for dates, times and numbers. */
export function pageLanguage() {
  return document.documentElement.lang || undefined;
}

/** A short time of day for an ISO timestamp, as the page's language writes it. */
export function timeOfDay(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(pageLanguage(), { hour: "2-digit", minute: "2-digit" });
}
