"""Where ddpayne finds its data and writes its caches: every path of the package is built here.

- ``DATA``: committed models (``models/``) and ab initio grids (``theory/``). The repository's
  ``data/`` folder in a checkout (an editable install); ``<prefix>/share/ddpayne/data`` after
  ``pip install .`` (pyproject's data-files); ``DDPAYNE_DATA`` overrides both.
- ``APPS``: the Panel apps served by ``ddpayne app``, found the same way (``DDPAYNE_APPS``).
- ``CACHE``: the MOOG build and downloads: ``DDPAYNE_CACHE``, else ``.cache`` of the checkout,
  else ``~/.cache/ddpayne``.
- ``SHARED``: the real survey files beside a checkout (``../shared/data``; ``DDPAYNE_SHARED``).
- ``DEMO_OUT``, ``REAL_DEMO_OUT``, ``DESI_DEMO_OUT``: where the demos write by default
  (``data/demo``, ``data/demo_real``, ``data/demo_desi`` of a checkout, else under the current
  folder).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
_IS_CHECKOUT = (_CHECKOUT / "pyproject.toml").exists() and (_CHECKOUT / "data" / "models").is_dir()
_INSTALLED = Path(sys.prefix) / "share" / "ddpayne"


def _pick(variable: str, in_checkout: Path, installed: Path) -> Path:
    if os.environ.get(variable):
        return Path(os.environ[variable])
    return in_checkout if _IS_CHECKOUT else installed


DATA = _pick("DDPAYNE_DATA", _CHECKOUT / "data", _INSTALLED / "data")
APPS = _pick("DDPAYNE_APPS", _CHECKOUT / "apps", _INSTALLED / "apps")
CACHE = Path(os.environ.get("DDPAYNE_CACHE") or
             (_CHECKOUT / ".cache" if _IS_CHECKOUT else Path.home() / ".cache" / "ddpayne"))
SHARED = Path(os.environ.get("DDPAYNE_SHARED") or _CHECKOUT.parent / "shared" / "data")
MODELS = DATA / "models"
THEORY = DATA / "theory"
DEMO_OUT = _CHECKOUT / "data" / "demo" if _IS_CHECKOUT else Path("ddpayne_demo")
REAL_DEMO_OUT = _CHECKOUT / "data" / "demo_real" if _IS_CHECKOUT else Path("ddpayne_demo_real")
DESI_DEMO_OUT = _CHECKOUT / "data" / "demo_desi" if _IS_CHECKOUT else Path("ddpayne_demo_desi")
