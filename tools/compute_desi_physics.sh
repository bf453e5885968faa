#!/usr/bin/env bash
# The DESI-resolution ab initio physics, resumable (every MOOG spectrum is cached in
# data/theory/work/ as it finishes, so rerunning continues where a run stopped):
#   1. desi-isochrone: the 101 reference stars' gradient spectra (1,616 spectra, regularizing physics)
#   2. desi-truth-grid: 1,300 truth-physics spectra for the DESI synthetic survey's truth emulator
#   3. the DESI truth emulator (data/models/truth_emulator_desi.pt) once the truth grid is complete
# About 15 s per spectrum per core: ~4.5 h on two cores for all of it. Usage:
#   nohup bash tools/compute_desi_physics.sh [WORKERS] > desi_physics.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${1:-2}"
ddpayne=.venv/bin/ddpayne
$ddpayne theory gradients --grid desi-isochrone --workers "$workers"
$ddpayne theory gradients --grid desi-truth-grid --workers "$workers"
$ddpayne theory truth-emulator --instrument desi
