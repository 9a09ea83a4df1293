"""The German catalogs are complete and their compiled .mo files match them.

``makemessages`` (GNU gettext) runs over a copy of the code: any string marked for
translation that the committed German catalog lacks, or has fuzzy or empty, fails the
test, as does a committed ``.mo`` whose messages differ from its ``.po``.
"""

from __future__ import annotations

import gettext
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parent.parent
DJANGO_ADMIN = Path(sys.executable).with_name("django-admin")
# Each catalog: the directory makemessages runs in, and its locale directory.
CATALOGS = {
    "durable_sessions": ("durable_sessions", "durable_sessions/locale"),
    "handoff_console": ("handoff_console", "handoff_console/locale"),
    "demo": (".", "project/locale"),
}
DEMO_IGNORES = ["durable_sessions", "handoff_console", "tests", "bench", "docs", "staticfiles"]
DEMO_IGNORES += [".venv", "build", "*.orig"]
DOMAINS = ("django", "djangojs")

needs_gettext = pytest.mark.skipif(
    shutil.which("xgettext") is None,
    reason="GNU gettext is not installed (apt-get install gettext)",
)


def committed(name: str, domain: str) -> Path:
    return ROOT / CATALOGS[name][1] / "de" / "LC_MESSAGES" / f"{domain}.po"


def keys(po: polib.POFile) -> set[tuple[str | None, str]]:
    return {(entry.msgctxt, entry.msgid) for entry in po if not entry.obsolete}


def extract(tmp_path: Path, name: str, domain: str) -> polib.POFile:
    """Run makemessages for one catalog in a copy of the repository; its fresh .po."""
    copy = tmp_path / "copy"
    if not copy.exists():
        ignore = shutil.ignore_patterns(
            ".git", "node_modules", ".venv", "*.mo", "__pycache__", "*.sqlite3*"
        )
        shutil.copytree(ROOT, copy, ignore=ignore)
    workdir = copy / CATALOGS[name][0]
    args = [str(DJANGO_ADMIN), "makemessages", "-l", "de", "-d", domain, "--no-obsolete", "-v", "0"]
    args += ["-i", "static/durable_sessions/vendor/*"]
    env = {**os.environ, "PYTHONPATH": str(copy)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if name == "demo":
        env["DJANGO_SETTINGS_MODULE"] = "project.settings"
        for pattern in DEMO_IGNORES:
            args += ["-i", pattern]
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return polib.pofile(str(copy / CATALOGS[name][1] / "de" / "LC_MESSAGES" / f"{domain}.po"))


@needs_gettext
@pytest.mark.parametrize("name", CATALOGS)
def test_every_marked_string_is_in_the_german_catalog(tmp_path: Path, name: str) -> None:
    for domain in DOMAINS:
        fresh = extract(tmp_path, name, domain)
        ours = keys(polib.pofile(str(committed(name, domain))))
        missing = sorted(keys(fresh) - ours, key=str)
        assert not missing, (
            f"{name} {domain}: not in the German catalog (run makemessages): {missing}"
        )
        assert keys(fresh), f"{name} {domain}: makemessages found no string at all"


@pytest.mark.parametrize("name", CATALOGS)
@pytest.mark.parametrize("domain", DOMAINS)
def test_german_catalog_is_translated_and_not_fuzzy(name: str, domain: str) -> None:
    po = polib.pofile(str(committed(name, domain)))
    assert len(po) > 0
    fuzzy = [entry.msgid for entry in po.fuzzy_entries()]
    empty = [entry.msgid for entry in po.untranslated_entries()]
    assert not fuzzy, f"{name} {domain}: fuzzy entries {fuzzy}"
    assert not empty, f"{name} {domain}: untranslated entries {empty}"
    for entry in po:
        # A placeholder of the English text is in the German one too (and no other).
        source = sorted(set(_placeholders(entry.msgid)))
        targets = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        for text in targets:
            assert sorted(set(_placeholders(text))) == source, (entry.msgid, text)


def _placeholders(text: str) -> list[str]:
    import re

    return re.findall(r"%\([a-z_]+\)[sd]", text)


@pytest.mark.parametrize("name", CATALOGS)
@pytest.mark.parametrize("domain", DOMAINS)
def test_committed_mo_matches_its_po(name: str, domain: str) -> None:
    po_path = committed(name, domain)
    with po_path.with_suffix(".mo").open("rb") as shipped:
        compiled = gettext.GNUTranslations(shipped)
    po = polib.pofile(str(po_path))
    for entry in po.translated_entries():
        prefix = f"{entry.msgctxt}\x04" if entry.msgctxt else ""
        if entry.msgid_plural:
            for n, index in ((1, 0), (2, 1)):
                got = (
                    compiled.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, n)
                    if prefix
                    else (compiled.ngettext(entry.msgid, entry.msgid_plural, n))
                )
                assert got == entry.msgstr_plural[index], (po_path.name, entry.msgid)
        else:
            got = (
                compiled.pgettext(entry.msgctxt, entry.msgid)
                if prefix
                else compiled.gettext(entry.msgid)
            )
            assert got == entry.msgstr, (po_path.name, entry.msgid)
    # Nothing in the .mo that the .po lacks (a stale compiled catalog).
    assert len(compiled._catalog) - 1 == sum(  # type: ignore[attr-defined]  # minus the header
        2 if entry.msgid_plural else 1 for entry in po.translated_entries()
    )
