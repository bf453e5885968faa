"""Figures of reference gradient spectra: one PNG per reference star, one panel per label."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the object API: no backend is set on import

from ..labels import pretty
from ..preprocess.grid import instrument_mask
from .gradients import load_reference_gradients


def gradient_figures(name: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>/star<NN>.png`` for every reference star; returns the folder."""
    ref = load_reference_gradients(name)
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    wave = ref.wavelength
    masked = ~instrument_mask(wave)
    for s, row in enumerate(ref.stars):
        n = len(ref.labels)
        fig = Figure(figsize=(12, 1.1 * n + 1))
        axes = fig.subplots(n, 1, sharex=True)
        for k, (ax, lab) in enumerate(zip(np.atleast_1d(axes), ref.labels)):
            ax.fill_between(wave, 0, 1, where=masked, color="0.9", transform=ax.get_xaxis_transform())
            ax.plot(wave, ref.dflux[s, k], lw=0.5, color="k")
            ax.set_ylabel(f"{pretty(lab)}\n({row[f'd_{lab}']:+g})", fontsize=7, rotation=0,
                          ha="right", va="center")
            ax.tick_params(labelsize=6)
        axes[0].set_title(f"{name}: reference star {row['star']}  Teff={row['teff']:.0f} K "
                          f"logg={row['logg']:.2f} [Fe/H]={row['feh']:+.1f}  (dF = F(l+step) - F(l);"
                          " grey: masked in fits)", fontsize=8)
        axes[-1].set_xlabel("vacuum wavelength [A]")
        fig.tight_layout(h_pad=0.1)
        fig.savefig(folder / f"star{row['star']:02d}.png", dpi=90)
    return folder
