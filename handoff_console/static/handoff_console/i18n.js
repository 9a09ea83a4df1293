/**
 * Translated text for the console's modules: Django's JavaScript catalog, loaded by
 * base.html as a script file before the modules run (no inline script). The same small
 * functions as durable_sessions/i18n.js, kept here so that the console's modules import
 * nothing across apps' static folders (a host's storage may hash each file's name).
 */

const catalog = () => globalThis.django ?? null;

export function gettext(text) {
  return catalog()?.gettext?.(text) ?? text;
}

export function ngettext(singular, plural, count) {
  const django = catalog();
  if (django?.ngettext) return django.ngettext(singular, plural, count);
  return count === 1 ? singular : plural;
}

export function pgettext(context, text) {
  return catalog()?.pgettext?.(context, text) ?? text;
}

/** Fill named placeholders: `format(gettext("%(count)s open"), { count: 2 })`. */
export function format(text, values) {
  return text.replace(/%\(([a-z_]+)\)s/g, (match, name) => (name in values ? String(values[name]) : match));
}

/** The page's language (its `<html lang>`), for times and numbers. */
export function pageLanguage() {
  return document.documentElement.lang || undefined;
}
