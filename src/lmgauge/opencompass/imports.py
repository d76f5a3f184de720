"""Read an OpenCompass config without OpenCompass or mmengine: the names it imports, provided.

While a config is executed, a meta-path finder answers three kinds of import:

- `mmengine.config` (and `mmengine`): `read_base()` is a no-op context manager, as it is at run
  time in mmengine's pure-Python configs; the imports inside it are what matters.
- `opencompass.configs.<path>` and the relative imports of a config (`from .datasets.mmlu.mmlu_ppl
  import mmlu_datasets`): real config files, executed as modules. A relative import resolves
  against the importing file's folder first, then against each OpenCompass `configs/` folder
  (a `--oc-root` checkout, `OPENCOMPASS_ROOT`, the installed `opencompass` package), as mmengine
  resolves them.
- any other `opencompass.*` name (`opencompass.models.HuggingFaceBaseModel`,
  `opencompass.utils.text_postprocessors.first_option_postprocess`): a `Ref` naming it. lmgauge
  maps a Ref to what it implements, or refuses it by name.

The finder is installed only for the duration of `executing_config` and the modules it made are
removed afterwards, so nothing of this leaks into the process (and the real `opencompass` package,
installed or not, is never imported).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SYNTH = "_lmgauge_occfg"  # package under which a config's own folder is importable


@dataclass(frozen=True)
class Ref:
    """A name imported from `opencompass.*`: a class used as `type=` or a function (postprocessor)."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"

    def __call__(self, *args, **kwargs):  # a config calling an OpenCompass name (rare): keep what it asked for
        return {"type": self, "_args": list(args), **kwargs}

    def __repr__(self) -> str:
        return self.dotted


@contextlib.contextmanager
def read_base() -> Iterator[None]:
    """mmengine.config.read_base: the imports inside it are plain imports here."""
    yield


def installed_configs_dir() -> Path | None:
    """`opencompass/configs` of an installed opencompass package, found without importing it."""
    try:
        spec = importlib.util.find_spec("opencompass")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "configs"
        if p.is_dir():
            return p
    return None


def configs_roots(oc_root: str | os.PathLike | None = None) -> list[Path]:
    """OpenCompass `configs/` folders searched for config names, in order: --oc-root,
    OPENCOMPASS_ROOT, the installed package. A checkout root holds `opencompass/configs` (and
    older ones `configs/`); a folder that is itself a configs folder is taken as it is."""
    out: list[Path] = []
    for given in (oc_root, os.environ.get("OPENCOMPASS_ROOT")):
        if not given:
            continue
        root = Path(given).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"OpenCompass root {str(root)!r} is not a folder")
        for cand in (root / "opencompass" / "configs", root / "configs", root):
            if (cand / "datasets").is_dir() or (cand / "models").is_dir():
                out.append(cand)
                break
        else:
            raise FileNotFoundError(f"OpenCompass root {str(root)!r} has no opencompass/configs/ or configs/ folder")
    pkg = installed_configs_dir()
    if pkg is not None:
        out.append(pkg)
    unique: dict[str, Path] = {}
    for p in out:
        unique.setdefault(str(p.resolve()), p)
    return list(unique.values())


class _RefModule(types.ModuleType):
    """An `opencompass.*` module that is not a config: every attribute is a Ref."""

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        return Ref(self.__name__, name)


class _ConfigLoader(importlib.abc.Loader):
    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: a folder (package)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        if self.path is None:
            return
        code = compile(self.path.read_text(encoding="utf-8"), str(self.path), "exec")
        exec(code, module.__dict__)  # noqa: S102 - a config file is Python the user asked to run


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, config_dir: Path, roots: Sequence[Path]) -> None:
        self.config_dir = config_dir
        self.roots = list(roots)

    def _locate(self, bases: Sequence[Path], parts: list[str]) -> Path | None:
        for base in bases:
            p = base.joinpath(*parts)
            if p.with_suffix(".py").is_file():
                return p.with_suffix(".py")
            if p.is_dir():
                return p
        return None

    def _spec(self, fullname: str, bases: Sequence[Path], parts: list[str]):
        found = self._locate(bases, parts) if parts else bases[0] if bases else None
        if found is None:
            return None
        if found.is_dir():
            spec = importlib.machinery.ModuleSpec(fullname, _ConfigLoader(None), is_package=True)
            spec.submodule_search_locations = [str(found)]
            return spec
        return importlib.util.spec_from_loader(fullname, _ConfigLoader(found), origin=str(found))

    def find_spec(self, fullname, path=None, target=None):
        head, _, rest = fullname.partition(".")
        parts = rest.split(".") if rest else []
        if head == SYNTH:
            # the config's folder first, then the OpenCompass configs folders (mmengine's fallback)
            return self._spec(fullname, [self.config_dir, *self.roots], parts)
        if head == "mmengine":
            spec = importlib.machinery.ModuleSpec(fullname, _ShimLoader(), is_package=True)
            spec.submodule_search_locations = []
            return spec
        if head == "opencompass":
            if parts[:1] == ["configs"]:
                if not self.roots:
                    raise ImportError(
                        f"{fullname}: no OpenCompass configs folder found: install the opencompass package "
                        "(pip install --no-deps opencompass==0.5.4; it is read, never imported) or give "
                        "--oc-root DIR / OPENCOMPASS_ROOT"
                    )
                return self._spec(fullname, self.roots, parts[1:])
            spec = importlib.machinery.ModuleSpec(fullname, _ShimLoader(), is_package=True)
            spec.submodule_search_locations = []
            return spec
        return None


class _ShimLoader(importlib.abc.Loader):
    def create_module(self, spec):
        if spec.name.startswith("mmengine"):
            mod = types.ModuleType(spec.name)
            if spec.name == "mmengine.config":
                mod.read_base = read_base  # type: ignore[attr-defined]  # the one name configs import from it
            return mod
        return _RefModule(spec.name)

    def exec_module(self, module) -> None:
        return None


_OWNED = ("mmengine", "opencompass", SYNTH)


def _owned(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _OWNED)


@contextlib.contextmanager
def executing_config(config_dir: Path, roots: Sequence[Path]) -> Iterator[None]:
    """Install the finder; afterwards remove it and every module it made, restoring any that
    were there before (a real mmengine the user has imported stays untouched)."""
    saved = {k: v for k, v in sys.modules.items() if _owned(k)}
    for k in saved:
        del sys.modules[k]
    finder = _Finder(config_dir.resolve(), roots)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if _owned(k)]:
            del sys.modules[k]
        sys.modules.update(saved)


def run_config_file(path: Path, roots: Sequence[Path]) -> dict:
    """Execute one config file as OpenCompass would read it; its top-level names.

    The file runs as module `_lmgauge_occfg.<stem>` so that its relative imports resolve against
    its folder (and then the configs roots)."""
    path = path.resolve()
    with executing_config(path.parent, roots):
        name = f"{SYNTH}.{path.stem}"
        spec = importlib.util.spec_from_loader(name, _ConfigLoader(path), origin=str(path))
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        module.__package__ = SYNTH
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]  # spec_from_loader with a loader has one
        return dict(module.__dict__)
