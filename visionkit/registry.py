"""The one registry of components (backbones, necks, heads, tasks, model presets, trackers, run loggers, export
writers, MediaPipe kinds) and the plugin loader.

Third-party packages declare an entry point in the group ``visionkit.plugins``; importing the module it
names registers its components. Plugins load lazily: on the first miss or listing.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from visionkit.errors import RegistryError

# "logger": run loggers (TensorBoard, MLflow, the report page) the trainer calls; a plugin adds one by registering
# "runtime": backends that run an exported file (found by the file's suffix); a plugin's format adds its own
KINDS = (
    "backbone",
    "neck",
    "head",
    "task",
    "model",
    "tracker",
    "logger",
    "export_format",
    "mediapipe_kind",
    "runtime",
)
PLUGIN_GROUP = "visionkit.plugins"


@dataclass(frozen=True)
class Family:
    """Names under ``prefix`` (e.g. ``timm/``) resolved on demand instead of registered one by one: a library with
    hundreds of networks is reached without registering (or importing) it up front.

    ``resolve(rest)`` returns the builder for ``prefix + rest`` or raises RegistryError (with its own did-you-mean);
    ``names()`` lists the names it can resolve, without the prefix (empty when the library is not installed);
    ``doc`` is one line for listings."""

    prefix: str
    resolve: Callable[[str], Callable[..., Any]]
    names: Callable[[], list[str]]
    doc: str = ""


class Registry:
    """Maps (kind, name) to a builder callable; names under a family prefix (``timm/...``) go to the family."""

    def __init__(self, kinds: tuple[str, ...] = KINDS, plugin_group: str = PLUGIN_GROUP):
        self._items: dict[str, dict[str, Callable[..., Any]]] = {k: {} for k in kinds}
        self._families: dict[str, dict[str, Family]] = {k: {} for k in kinds}
        self.plugin_group = plugin_group
        self.plugins_loaded: list[str] = []
        self.plugins_failed: dict[str, str] = {}
        self._plugins_done = False
        self._builtin_loaders: list[Callable[[], None]] = []
        self._builtins_state = "pending"  # pending → loading → done

    def add_builtin_loader(self, loader: Callable[[], None]) -> None:
        """A function that imports the built-in components; run once, on first use of the registry, so that
        importing the package (and quick commands such as ``visionkit cfg``) does not import torch."""
        self._builtin_loaders.append(loader)
        self._builtins_state = "pending"

    def _ensure_builtins(self) -> None:
        if self._builtins_state != "pending":
            return
        self._builtins_state = "loading"
        try:
            for loader in self._builtin_loaders:
                loader()
        finally:
            self._builtins_state = "done"

    # -- registration -------------------------------------------------------------------------------
    def register(self, kind: str, name: str | None = None, *, override: bool = False) -> Callable:
        """Decorator: ``@register("backbone", "resnet18")`` registers the decorated builder."""
        self._check_kind(kind)
        self._ensure_builtins()  # built-ins first, so a plugin's clash with one is caught either way

        def deco(fn: Callable) -> Callable:
            key = name or fn.__name__
            table = self._items[kind]
            if key in table and not override and table[key] is not fn:
                raise RegistryError(
                    f"{kind} '{key}' is already registered (by {_origin(table[key])}); "
                    f"pick another name or pass override=True"
                )
            table[key] = fn
            return fn

        return deco

    def add_family(self, kind: str, family: Family) -> None:
        """Route every ``kind`` name that starts with ``family.prefix`` to ``family.resolve``."""
        self._check_kind(kind)
        if not family.prefix.endswith("/"):
            raise RegistryError(f"family prefix must end with '/', got {family.prefix!r}")
        if family.prefix in self._families[kind]:
            raise RegistryError(f"{kind} family '{family.prefix}' is already registered")
        self._families[kind][family.prefix] = family

    def family(self, kind: str, name: str) -> Family | None:
        """The family whose prefix ``name`` carries, if any."""
        self._check_kind(kind)
        self._ensure_builtins()
        return next((f for p, f in self._families[kind].items() if name.startswith(p)), None)

    def families(self, kind: str) -> list[Family]:
        self._check_kind(kind)
        self._ensure_builtins()
        return list(self._families[kind].values())

    # -- lookup -------------------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The builder registered as ``name`` (or resolved by its family); a miss lists close matches and the
        plugins loaded."""
        self._check_kind(kind)
        self._ensure_builtins()
        if name not in self._items[kind]:
            self.load_plugins()
        if name not in self._items[kind] and (fam := self.family(kind, name)) is not None:
            return fam.resolve(name[len(fam.prefix) :])
        if name not in self._items[kind]:
            names = sorted(self._items[kind])
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            plugins = ", ".join(self.plugins_loaded) or "none"
            failed = "".join(f"; plugin '{p}' failed to load: {e}" for p, e in self.plugins_failed.items())
            fams = "".join(f" Also {f.prefix}<name>: {f.doc}." for f in self._families[kind].values())
            raise RegistryError(
                f"unknown {kind} '{name}'.{hint} Available: {', '.join(names) or 'none'}.{fams} "
                f"Plugins loaded: {plugins}{failed}. List them with `visionkit models {kind}`."
            )
        return self._items[kind][name]

    def build(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Build the component registered as ``name`` with keyword arguments."""
        return self.get(kind, name)(**kwargs)

    def available(self, kind: str, pattern: str = "*", families: bool | None = None) -> list[str]:
        """Sorted names of ``kind`` matching a glob pattern (plugins included). Family names (hundreds of timm
        networks) are included when ``families`` is true, or, when it is None, when the pattern is not ``*``: a
        search finds them, a plain listing (and contract tests over the registry) does not."""
        self._check_kind(kind)
        self._ensure_builtins()
        self.load_plugins()
        found = [n for n in self._items[kind] if fnmatch.fnmatch(n, pattern)]
        if families or (families is None and pattern != "*"):
            for fam in self._families[kind].values():
                found += [n for n in (fam.prefix + r for r in fam.names()) if fnmatch.fnmatch(n, pattern)]
        return sorted(found)

    def contains(self, kind: str, name: str) -> bool:
        self._check_kind(kind)
        self._ensure_builtins()
        if name not in self._items[kind]:
            self.load_plugins()
        if name not in self._items[kind] and (fam := self.family(kind, name)) is not None:
            try:
                fam.resolve(name[len(fam.prefix) :])
            except RegistryError:
                return False
            return True
        return name in self._items[kind]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._items)

    # -- plugins ------------------------------------------------------------------------------------
    def load_plugins(self, force: bool = False) -> None:
        """Import every module declared in the plugin entry-point group; a broken one is reported, not fatal."""
        if self._plugins_done and not force:
            return
        self._plugins_done = True
        for ep in importlib.metadata.entry_points(group=self.plugin_group):
            if ep.name in self.plugins_loaded:
                continue
            try:
                ep.load()
            except Exception as e:  # a plugin must never break the rest
                self.plugins_failed[ep.name] = f"{type(e).__name__}: {e}"
                warnings.warn(f"visionkit plugin '{ep.name}' ({ep.value}) failed to import: {e}", stacklevel=2)
            else:
                self.plugins_loaded.append(ep.name)

    def _check_kind(self, kind: str) -> None:
        if kind not in self._items:
            close = difflib.get_close_matches(kind, list(self._items), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise RegistryError(f"unknown component kind '{kind}'.{hint} Kinds: {', '.join(self._items)}")


def _origin(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


REGISTRY = Registry()
register = REGISTRY.register
add_family = REGISTRY.add_family
build = REGISTRY.build
available = REGISTRY.available
