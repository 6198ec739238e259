"""The settings of a warehouse kind, declared once.

A :class:`ConfigSpec` is the single description of a connection's settings: the CLI builds
its ``connection add`` options from it, the API validates with it, the UI renders its
"Set up connection" form from it, and :mod:`profilesync.secrets` learns from it which
settings are secrets. Each kind declares its spec in ``warehouses/<kind>/spec.py``, a module
that imports no driver, so a form can be shown for a kind whose extra is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from profilesync.errors import ConfigurationError

#: how a setting is entered: a one-line text, a filesystem path, a password (never shown
#: again), or a multi-line text such as a PEM key
FieldKind = Literal["text", "path", "password", "textarea"]


@dataclass(frozen=True)
class ConfigField:
    """One connection setting: its key, how it is labelled and whether it is a secret."""

    name: str
    label: str
    help: str = ""
    secret: bool = False
    required: bool = False
    kind: FieldKind = "text"
    default: str | None = None
    placeholder: str = ""

    @property
    def option(self) -> str:
        """The CLI flag for this setting (``data_path`` -> ``--data-path``)."""
        return "--" + self.name.replace("_", "-")

    @property
    def multiline(self) -> bool:
        return self.kind == "textarea"


def _unchanged(config: dict[str, Any]) -> dict[str, Any]:
    return config


@dataclass(frozen=True)
class ConfigSpec:
    """A kind's settings and the rules a connection's ``config`` must follow.

    :meth:`check` refuses a missing required setting (with ``needs`` as the message when
    the kind words it its own way), refuses or drops unknown keys (``strict``), then
    hands the rest to ``validate``, the kind's own normalisation (resolving paths,
    parsing a DSN, filling defaults).
    """

    kind: str
    label: str
    blurb: str
    fields: tuple[ConfigField, ...]
    validate: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged
    #: unknown keys are refused (True) or silently dropped (False)
    strict: bool = False
    #: the whole "missing setting" message, for kinds that phrase it themselves
    needs: str | None = None
    #: appended to the generic "missing setting" message
    needs_hint: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.secret)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def field(self, name: str) -> ConfigField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def default(self, name: str) -> str | None:
        return self.field(name).default

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` validated against this spec and normalised by the kind."""
        missing = [name for name in self.required_names if not config.get(name)]
        if missing:
            labels = " and ".join(f"“{self.field(name).label}”" for name in missing)
            raise ConfigurationError(
                self.needs or self._needs(missing),
                ui_message=f"a {self.label} connection needs {labels}",
                ui_fix=f"Fill in {labels} on the connection form",
            )
        unknown = sorted(set(config) - set(self.names))
        if unknown and self.strict:
            raise ConfigurationError(
                f"unknown {self.kind} setting(s) {', '.join(unknown)}: "
                f"use {', '.join(sorted(self.names))}"
            )
        known = {k: v for k, v in config.items() if k in self.names}
        return self.validate(known)

    def _needs(self, missing: list[str]) -> str:
        return (
            f"a {self.kind} connection needs {', '.join(missing)}: add "
            + " ".join(f"-o {k}=..." for k in missing)
            + self.needs_hint
        )

    def to_json(self) -> dict[str, Any]:
        """The spec as the API and the UI form read it."""
        return {
            "kind": self.kind,
            "label": self.label,
            "blurb": self.blurb,
            "fields": [
                {
                    "name": f.name,
                    "label": f.label,
                    "help": f.help,
                    "secret": f.secret,
                    "required": f.required,
                    "kind": f.kind,
                    "default": f.default,
                    "placeholder": f.placeholder,
                    "multiline": f.multiline,
                }
                for f in self.fields
            ],
        }


class FromSpec:
    """A warehouse class whose settings are its kind's :class:`ConfigSpec` (``spec``):
    ``secret_fields`` and ``validate_config`` follow from it, declared once per kind."""

    spec: ClassVar[ConfigSpec]
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.secret_fields = cls.spec.secret_names

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The settings checked against the kind's spec (kept for callers of the class)."""
        return cls.spec.check(config)
