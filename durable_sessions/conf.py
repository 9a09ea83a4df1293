"""One mechanism for an app's dict setting: a table of typed keys, validated once, cached,
and reloaded on Django's ``setting_changed`` signal.

An app declares its keys as class attributes of an :class:`AppSettings` subclass; that
class body is the only table of names, defaults, types, constraints and descriptions::

    class ConsoleSettings(AppSettings):
        setting_name = "HANDOFF_CONSOLE"
        check_id = "handoff_console.E001"

        REFRESH_SECONDS = Float(5.0, "the feed re-reads the queue this often", positive=True)

    console_settings = ConsoleSettings()
    console_settings.REFRESH_SECONDS  # 5.0: a float, even when configured as 5

The first read validates the whole dict (unknown keys, types, constraints, the rules
between keys) and raises ``ImproperlyConfigured`` naming the key at fault. Values come
back typed, so callers never cast them; class paths come back imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Generic, NoReturn, Self, TypeVar, overload

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

T = TypeVar("T")
ReloadCallback = Callable[[], None]


class Setting(Generic[T]):
    """One key of a dict setting: its default, expected type, constraints and meaning.

    Read on an :class:`AppSettings` instance it gives the key's current typed value; read
    on the class it gives this definition (for docs and tests).
    """

    type_label: ClassVar[str] = "value"

    def __init__(self, default: Any, doc: str) -> None:
        self.default = default
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...

    @overload
    def __get__(self, obj: AppSettings, owner: type | None = None) -> T: ...

    def __get__(self, obj: AppSettings | None, owner: type | None = None) -> Self | T:
        if obj is None:
            return self
        return obj.value(self.name)

    def __set__(self, obj: AppSettings, value: Any) -> NoReturn:
        raise AttributeError(
            f"{obj.setting_name}[{self.name!r}] is read-only here: change the Django setting."
        )

    def clean(self, value: object) -> Any:
        """The validated value to store, or ValueError saying what was expected."""
        raise NotImplementedError

    def load(self, cleaned: Any) -> T:
        """The value callers get from the stored one (class paths import here)."""
        return cleaned

    @property
    def default_label(self) -> str:
        """The default as docs show it."""
        value = self.clean(self.default)
        return f'"{value}"' if isinstance(value, str) else repr(value)

    @staticmethod
    def _refuse(expected: str, value: object) -> NoReturn:
        raise ValueError(f"must be {expected}, not {value!r}.")


class Bool(Setting[bool]):
    """``True`` or ``False``."""

    type_label = "bool"

    def clean(self, value: object) -> bool:
        if not isinstance(value, bool):
            self._refuse("True or False", value)
        return value


class _Number(Setting[T]):
    """A number; ``positive`` refuses ``<= 0``, except 0 itself where ``zero_is_off``
    (0 turns the feature off, e.g. a limit)."""

    def __init__(
        self, default: Any, doc: str, *, positive: bool = False, zero_is_off: bool = False
    ) -> None:
        self.positive = positive
        self.zero_is_off = zero_is_off
        super().__init__(default, doc)

    def _check_sign(self, value: float) -> None:
        if self.zero_is_off and value == 0:
            return
        if self.positive and not value > 0:  # also refuses NaN
            expected = ">= 0 (0: off)" if self.zero_is_off else "> 0"
            raise ValueError(f"must be {expected}, not {value!r}.")


class Int(_Number[int]):
    """A whole number; ``True``/``False`` are refused."""

    type_label = "int"

    def clean(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self._refuse("an int", value)
        self._check_sign(value)
        return value


class Float(_Number[float]):
    """A number, read back as a float (``5`` gives ``5.0``); ``True``/``False`` are refused."""

    type_label = "float"

    def clean(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._refuse("a number (int or float)", value)
        self._check_sign(value)
        return float(value)


class Str(Setting[str]):
    """A string, optionally one of fixed ``choices``."""

    type_label = "str"

    def __init__(self, default: str, doc: str, *, choices: Iterable[str] = ()) -> None:
        self.choices = tuple(choices)
        super().__init__(default, doc)

    def clean(self, value: object) -> str:
        if not isinstance(value, str):
            self._refuse("a str", value)
        if self.choices and value not in self.choices:
            self._refuse(" or ".join(repr(c) for c in self.choices), value)
        return value


class Dict(Setting[Mapping[str, Any]]):
    """A dict with string keys (e.g. keyword arguments); read back as a read-only copy."""

    type_label = "dict"

    def clean(self, value: object) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self._refuse("a dict with str keys", value)
        return dict(value)

    def load(self, cleaned: dict[str, Any]) -> Mapping[str, Any]:
        # Shared by every caller until the next reload: nobody may change it for the rest.
        return MappingProxyType(cleaned)


class ClassPath(Setting[T]):
    """A dotted path (``"package.module.Name"``), read back as the imported object."""

    type_label = "class path"

    def clean(self, value: object) -> str:
        if not isinstance(value, str) or "." not in value.strip("."):
            self._refuse('a dotted path such as "package.module.Name"', value)
        return value

    def load(self, cleaned: str) -> T:
        return import_string(cleaned)


class AppSettings:
    """Typed, validated, cached access to one dict setting of an app.

    Subclasses set ``setting_name`` and ``check_id``, declare their keys as
    :class:`Setting` attributes, and may override :meth:`rules` for checks that involve
    several keys.
    """

    setting_name: ClassVar[str]
    check_id: ClassVar[str]
    _definitions: ClassVar[dict[str, Setting[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Setting[Any]] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Setting)})
        for name, definition in found.items():
            try:
                definition.clean(definition.default)
            except ValueError as exc:  # a mistake in the table itself, not in a host's settings
                raise TypeError(f"{cls.__name__}.{name}: the default {exc}") from None
        cls._definitions = found

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None
        self._loaded: dict[str, Any] = {}
        self._callbacks: list[tuple[ReloadCallback, frozenset[str]]] = []
        setting_changed.connect(self._setting_changed)

    @classmethod
    def definitions(cls) -> dict[str, Setting[Any]]:
        """Every key's definition, in the order declared."""
        return dict(cls._definitions)

    def rules(self, values: Mapping[str, Any]) -> Iterable[str]:
        """Problems between keys of the typed ``values``, each a sentence (none here)."""
        return ()

    def configured(self) -> Any:
        """What the host project set (an empty dict when it set nothing)."""
        return getattr(settings, self.setting_name, {})

    def clean(self, configured: Any) -> dict[str, Any]:
        """Every key's typed value (class paths not yet imported), defaults filled in.

        Raises ``ImproperlyConfigured`` naming the setting and the key at fault.
        """
        name = self.setting_name
        if not isinstance(configured, dict):
            raise ImproperlyConfigured(f"{name} must be a dict, not {type(configured).__name__}.")
        unknown = sorted(map(str, set(configured) - set(self._definitions)))
        if unknown:
            raise ImproperlyConfigured(
                f"{name}: unknown key(s) {', '.join(unknown)}. "
                f"Known keys: {', '.join(sorted(self._definitions))}."
            )
        values: dict[str, Any] = {}
        for key, definition in self._definitions.items():
            try:
                values[key] = definition.clean(configured.get(key, definition.default))
            except ValueError as exc:
                raise ImproperlyConfigured(f"{name}[{key!r}] {exc}") from None
        for problem in self.rules(values):
            raise ImproperlyConfigured(f"{name}: {problem}")
        return values

    @property
    def values(self) -> dict[str, Any]:
        """The validated typed values of the current setting (cached until a reload)."""
        if self._values is None:
            self._values = self.clean(self.configured())
        return self._values

    def value(self, key: str) -> Any:
        """One key's value as callers get it: typed, class paths imported."""
        cache = self._loaded  # a reload meanwhile swaps the dict: never fill the new one stale
        try:
            return cache[key]
        except KeyError:
            pass
        loaded = cache[key] = self._load(key, self.values[key])
        return loaded

    def _load(self, key: str, cleaned: Any) -> Any:
        try:
            return self._definitions[key].load(cleaned)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{self.setting_name}[{key!r}]: cannot import {cleaned!r}: {exc}"
            ) from exc

    def validate(self) -> None:
        """Validate the setting as it is now, importing every class path; the cache is
        left alone. Raises ``ImproperlyConfigured``."""
        values = self.clean(self.configured())
        for key, cleaned in values.items():
            self._load(key, cleaned)

    def check(self) -> list[CheckMessage]:
        """The system-check form of :meth:`validate`: one error with ``check_id``, or none."""
        try:
            self.validate()
        except ImproperlyConfigured as exc:
            return [Error(str(exc), id=self.check_id, obj=self.setting_name)]
        return []

    def on_reload(self, callback: ReloadCallback, *, also: Iterable[str] = ()) -> ReloadCallback:
        """Run ``callback`` whenever this setting is reloaded, and whenever one of the
        Django settings named in ``also`` changes (state derived from both is stale)."""
        self._callbacks.append((callback, frozenset(also)))
        return callback

    def reload(self) -> None:
        """Forget the cached values and run the reload callbacks."""
        self._values = None
        self._loaded = {}
        for callback, _ in self._callbacks:
            callback()

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == self.setting_name:
            self.reload()
            return
        for callback, also in self._callbacks:
            if setting in also:
                callback()
