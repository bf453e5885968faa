"""Physics constants and paper thresholds, in one place.

Every number carries a note saying where it comes from. "X19" is Xiang et al. 2019 (LAMOST DR5
DD-Payne, ApJS 245, 34), "Z24" is Zhang et al. 2024 (DESI EDR DD-Payne), "SPEC" is
the product spec (shared/SPEC.md), "A09" is Asplund et al. 2009 (ARA&A 47, 481).
"""

import numpy as np

C_KMS = 299792.458  # speed of light, km/s (CODATA)

# Solar photospheric abundances log eps(X) = log(N_X/N_H) + 12, A09 Table 1 (photosphere).
SOLAR_LOGEPS = {
    "H": 12.00, "He": 10.93, "Li": 1.05, "C": 8.43, "N": 7.83, "O": 8.69, "Na": 6.24,
    "Mg": 7.60, "Al": 6.45, "Si": 7.51, "S": 7.12, "K": 5.03, "Ca": 6.34, "Sc": 3.15,
    "Ti": 4.95, "V": 3.93, "Cr": 5.64, "Mn": 5.43, "Fe": 7.50, "Co": 4.99, "Ni": 6.22,
    "Cu": 4.19, "Zn": 4.56, "Sr": 2.87, "Y": 2.21, "Zr": 2.58, "Ba": 2.18, "La": 1.10,
    "Eu": 0.52,
}

ATOMIC_NUMBER = {
    "H": 1, "He": 2, "Li": 3, "C": 6, "N": 7, "O": 8, "Na": 11, "Mg": 12, "Al": 13, "Si": 14,
    "S": 16, "K": 19, "Ca": 20, "Sc": 21, "Ti": 22, "V": 23, "Cr": 24, "Mn": 25, "Fe": 26,
    "Co": 27, "Ni": 28, "Cu": 29, "Zn": 30, "Sr": 38, "Y": 39, "Zr": 40, "Ba": 56, "La": 57,
    "Eu": 63,
}

# Alpha elements that follow [alpha/Fe] in the model atmospheres (atmosnet's ALPHA_FE label).
ALPHA_ELEMENTS = ("O", "Mg", "Si", "Ca", "Ti")  # X19 sec. 6 uses Mg Si Ca Ti for [alpha/Fe]

# --- Preprocessing (docs/spec.md sec. 3) -------------------------------------------------------------
CONTINUUM_KERNEL_AA = {"lamost": 50.0, "desi": 20.0}  # Gaussian width L, X19 sec. 2 / Z24 eq. 2
# Interpolation of the rest-frame shift (ours): DESI's lines are barely sampled (LSF FWHM ~2
# pixels); a shift and back errs by 0.56 % rms with linear interpolation and 0.22 % with cubic
# convolution on DESI-resolution MOOG spectra (studies/desi_resampling). LAMOST keeps linear, which
# its committed models were trained with (its error is alike: 0.70 % -> 0.22 %).
RESAMPLING = {"lamost": "linear", "desi": "cubic"}
# Ours: pixel weights of the pseudo-continuum smoothing. "mask": every usable pixel
# (ivar > 0) alike; "ivar": by inverse variance (docs/spec.md sec. 3, Z24 eqs. 1-2). Photon noise gives a
# line core a higher ivar than the continuum beside it, so an ivar-weighted continuum sinks into
# the lines by an amount ab initio spectra (no noise) cannot share; README *The pipeline* and
# studies/continuum_weighting/continuum_weighting.json.
CONTINUUM_WEIGHTS = "mask"
TELLURIC_BANDS_AA = ((6270.0, 6330.0), (6800.0, 6990.0), (7100.0, 7320.0), (7520.0, 7740.0),
                     (8050.0, 8350.0))  # docs/spec.md sec. 3
BLUE_LIMIT_AA = 3900.0  # docs/spec.md sec. 3: pixels bluer than this are masked
RED_LIMIT_AA = 8880.0  # docs/spec.md sec. 3: pixels redder than this are masked
DICHROIC_AA = (5720.0, 6060.0)  # docs/spec.md sec. 3: LAMOST dichroic overlap, masked ...
NA_D_WINDOW_AA = (5880.0, 5910.0)  # ... except the Na D window (also X19 sec. 5.4 chi2_na)
EMULATOR_MISMATCH_CUT = 0.05  # docs/spec.md sec. 3: mask pixels with |model - solar obs| > 0.05
# Balmer line cores (air, A) and their half-widths masked while smoothing the continuum
# (Z24 sec. 2); half-widths chosen to cover the core at R~1800.
BALMER_CORES_AA = ((3970.07, 8.0), (4101.74, 10.0), (4340.47, 12.0), (4861.33, 15.0),
                   (6562.80, 20.0))
# Strong diffuse interstellar bands (Herbig 1995), masked while smoothing (Z24 sec. 2).
DIB_CORES_AA = ((4428.0, 10.0), (5780.5, 4.0), (5797.1, 3.0), (6283.8, 5.0), (6613.6, 3.0),
                (8620.4, 3.0))

# LAMOST native wavelength grid: log10-lambda step 1e-4 from 3700 A, 3909 pixels
# (LAMOST DR5 data model).
LAMOST_LOGLAM_START = 3.5682  # log10(3700 A)
LAMOST_LOGLAM_STEP = 1e-4
LAMOST_NPIX = 3909
LAMOST_RESOLUTION = 1800.0  # X19 sec. 2: mean LSF of LAMOST, R ~ 1800
# DESI's line spread function, FWHM [A] at knots (wavelength [A], FWHM [A]) per camera: measured
# from the RESOLUTION HDUs of the two real coadds in ../shared/data/desi (desispec's band-diagonal
# kernels, second moment, mean of the two files, median within +-40 A of each knot;
# tests/test_desi.py re-measures them). Z24 sec. 1 quotes "about 1.8 A".
DESI_LSF_FWHM_AA = {
    "B": ((3620.0, 3980.0, 4340.0, 4700.0, 5060.0, 5420.0, 5780.0),
          (1.609, 1.619, 1.631, 1.641, 1.640, 1.630, 1.615)),
    "R": ((5780.0, 6083.0, 6387.0, 6690.0, 6993.0, 7297.0, 7600.0),
          (1.489, 1.500, 1.516, 1.527, 1.531, 1.522, 1.511)),
    "Z": ((7540.0, 7917.0, 8295.0, 8672.0, 9049.0, 9427.0, 9804.0),
          (1.685, 1.758, 1.783, 1.781, 1.764, 1.779, 1.843)),
}
# Width [pixel^2] of the fit's prior on a DESI spectrum's LSF variance offset, centred on what its
# RESOLUTION matrices say (fit.lm). Ours: the demo's synthetic RESOLUTION matrices are exact, and
# desispec's spectroperfectionism extraction models each fibre's PSF (Guy et al. 2023, AJ 165, 144);
# 0.01 pixel^2 is ~1.3 % of the LSF's variance (~0.78 pixel^2), ~0.6 % of its FWHM.
DESI_LSF_PRIOR_SIGMA = 0.01
# Values tried for a pixel's model scatter s [normalized flux] (``model.estimate_pixel_scatter``;
# The Cannon's s^2, Ness et al. 2015 sec. 2): 0 and 1e-4 ... 0.3 in logarithmic steps of 4 %, so
# the value taken is within 2 % of the likelihood's maximum, about its sampling error on ~1,000
# training spectra.
PIXEL_SCATTER_GRID = np.concatenate([[0.0], np.logspace(-4, np.log10(0.3), 200)])
# DESI cameras (Z24 sec. 2; desispec coadd grids, 0.8 A pixels): B 3600-5800, R 5760-7620,
# Z 7520-9824 A. On the merged grid B is used below 5780 A, Z above 7570 A (overlap midpoints).
DESI_CAMERA_RANGES_AA = {"B": (3600.0, 5800.0), "R": (5760.0, 7620.0), "Z": (7520.0, 9824.0)}
DESI_CAMERA_SPLIT_AA = (5780.0, 7570.0)
DESI_PIXEL_AA = 0.8
# Strong telluric absorption in DESI's range (O2 B and A bands, H2O near 8200 and 9300-9650 A;
# the standard bands, e.g. Smette et al. 2015, A&A 576, A77): not fitted, and left as residuals
# by the synthetic survey.
DESI_TELLURIC_BANDS_AA = ((6865.0, 6930.0), (7590.0, 7700.0), (8130.0, 8350.0), (9300.0, 9650.0))
# The survey S/N of a DESI spectrum: the median per-pixel S/N of the R camera (desispec's
# MEDIAN_COADD_SNR_R; ours: Z24 does not say which camera its S/N cuts use).
DESI_SURVEY_SNR_CAMERA = "R"

# --- Training (docs/spec.md sec. 5, X19 sec. 2) -------------------------------------------------------
D_SCALE_PARAMS = 5.0  # X19 sec. 2: D_scale for Teff, logg, vmic
D_SCALE_ABUNDANCES = 50.0  # X19 sec. 2: D_scale for [Fe/H] and [X/Fe]
# Ours: the relative prior weighting (loss.relative_weights) weighs no gradient more than as if
# its amplitude were this fraction of its label's mean over the reference stars.
RELATIVE_PRIOR_FLOOR = 0.1
# Ours: the shape-only prior (loss.GradientPrior.amplitude_range) lets the data scale each ab
# initio gradient by up to this factor either way.
SHAPE_PRIOR_AMPLITUDE = (0.5, 2.0)
BATCH_SIZE = 512  # docs/spec.md sec. 5
LEARNING_RATE_START = 1e-2  # docs/spec.md sec. 5
LEARNING_RATE_END = 1e-4  # docs/spec.md sec. 5
DESI_N_HIDDEN = 40  # Z24 sec. 3.1: "we empirically increased the number of neurons from 10 to 40"
# DESI training: at most this many Levenberg-Marquardt iterations. On the DESI demo's ~700
# training stars the validation chi^2 at iteration 40 is within 0.7 % of where LM's own stop
# (iteration 55) leaves it, 11 minutes earlier on 2 cores (studies/desi_network).
DESI_LM_ITERATIONS = 40
DESI_REFERENCE_GRID = "desi-isochrone"  # Z24 sec. 3.1: 101 reference stars at DESI resolution
METAL_POOR_TRAINING_FEH = -0.5  # docs/spec.md sec. 5: metal-poor training set [Fe/H] < -0.5

# --- Reference stars (X19 Table 1) --------------------------------------------------------------
# (Teff K, dTeff, logg, dlogg, [Fe/H], d[Fe/H]); all with vmic 1.5 (step 1.0), [X/Fe] 0 (step 0.5).
TABLE1_REFERENCE_STARS = (
    (5778, 200, 4.53, -0.25, 0.0, 0.5),
    (6380, 200, 4.06, +0.25, -0.5, 0.5),
    (4791, 200, 2.52, +0.50, 0.0, 0.5),
    (5097, 200, 2.16, +0.50, -1.5, 0.5),
    (5012, 200, 4.62, -0.25, 0.0, 0.5),
    (4991, 200, 4.68, -0.25, -0.5, 0.5),
    (6500, 200, 4.02, +0.50, -1.5, 0.5),
    (5854, 200, 4.68, -0.25, -2.5, 0.5),
    (5183, 200, 2.04, +0.50, -2.5, 0.5),
    (5671, 200, 3.56, +0.25, -1.0, 0.5),
    (5200, 200, 3.55, +0.25, 0.0, 0.5),
    (6003, 200, 3.57, +0.25, -2.0, 0.5),
    (4784, 200, 4.77, -0.25, -1.5, 0.5),
    (4369, 200, 1.65, +0.50, -0.5, 0.5),
    (7183, 200, 4.18, -0.25, -0.5, 0.5),
    (7059, 200, 4.19, -0.25, -2.5, 0.5),
)
TABLE1_GRID = "lamost-table1"  # X19 sec. 2 and Table 1: the 16 stars at [X/Fe] 0, every label stepped
# Ours: the default prior and X_flag reference, Table 1's stars at Milky Way [X/Fe]
# (theory/gradients.galactic_xfe); README *Training*, studies/reference_manifold/reference_manifold.json.
REFERENCE_GRID = "lamost-table1-galactic"
TABLE1_VMIC = 1.5  # X19 Table 1 note: vmic of every reference star, km/s
TABLE1_VMIC_STEP = 1.0  # X19 Table 1 note
TABLE1_XFE_STEP = 0.5  # X19 Table 1

# --- Galactic chemical trends (ours, from the literature; the lamost-table1-galactic grid) -------
# X19 Table 1 puts every reference star at [X/Fe] = 0, where no metal-poor star lies; these mean
# Milky Way trends put the same stars where real stars of their [Fe/H] are.
GALACTIC_ALPHA_PLATEAU = 0.3  # [O,Mg,Si,Ca,Ti/Fe] at [Fe/H] <= -1, linear to 0 at solar (Bensby+ 2014 Fig. 15; Venn+ 2004)
GALACTIC_AL_OVER_ALPHA = 0.5  # [Al/Fe] ~ +0.15 in the thick disc and halo (Bensby+ 2014 Fig. 17)
GALACTIC_MN_PLATEAU = -0.35  # [Mn/Fe] at [Fe/H] <= -1.5, linear to 0 at solar (Battistini & Bensby 2015, LTE)
GALACTIC_CU_PLATEAU = -0.4  # [Cu/Fe] at [Fe/H] <= -1.5, linear to 0 at solar (Mishenina+ 2002)
GALACTIC_PLATEAU_FEH = {"alpha": -1.0, "mn": -1.5, "cu": -1.5}  # [Fe/H] where each plateau starts
DREDGE_UP_GIANT = {"logg_max": 3.0, "c_fe": -0.2, "n_fe": 0.3}  # red giants after the first dredge-up (Gratton+ 2000)

# --- Quality (docs/spec.md sec. 8, X19 sec. 5.4) --------------------------------------------------------
# Nearest-reference-star metric D = sqrt((dTeff/100)^2 + (dlogg/0.2)^2 + (d[Fe/H]/0.1)^2).
GRADCORR_METRIC_SCALES = {"teff": 100.0, "logg": 0.2, "feh": 0.1}  # X19 sec. 2
GRADCORR_CUTOFF = 0.5  # X19 sec. 5.4.2: bin median gradcorr > 0.5 -> X_flag 1
GRADCORR_MIN_SNR = 30.0  # X19 sec. 5.4.2: only S/N > 30 stars enter the bin medians
XFLAG_TEFF_MAX = 7500.0  # X19 sec. 5.4.2: Teff > 7500 K -> X_flag 0
XFLAG_COOL_DWARF = (4500.0, 3.8)  # X19 sec. 5.4.2: Teff < 4500 K and logg > 3.8 -> X_flag 0
# Ours (flags/response.py; studies/population_shift): X_flag 1 also needs the fit's response to the
# label's own ab initio change, d fitted / d true, to reach RESPONSE_MIN (the slope a label must
# keep when its population's abundance correlations are broken, SHIFT_MIN_SLOPE below), measured
# at the stars of the instrument's reference grids that did not regularize the model.
RESPONSE_MIN = 0.85
RESPONSE_GRIDS = {"lamost": ("lamost-isochrone", "lamost-table1", "lamost-table1-galactic"),
                  "desi": ("desi-isochrone",)}
# Ours: at least ~5 repeat pairs per term of the 20-term error-scale polynomial before it is fitted.
ERROR_SCALE_MIN_PAIRS = 100
GIANT_LOGG = 3.8  # dwarfs/giants split (X19 uses logg 3.8 for cool dwarfs, sec. 5.4.2)
CHI2_DWARF_TEFF_RANGE = (4500.0, 7500.0)  # X19 sec. 5.4.1: dwarfs fitted on this Teff range
# X19 sec. 5.4.1: qflag_chi2 bad where chi2ratio exceeds the cut of the S/N tier (S/N upper
# edge, cut): S/N < 200: 5; 200-300: 7.5; 300-400: 10; 400-500: 12.5; > 500: 15.
CHI2RATIO_TIERS = ((200.0, 5.0), (300.0, 7.5), (400.0, 10.0), (500.0, 12.5), (np.inf, 15.0))
# Ours: the chi2ratio's scatter model (dex of chi2) never below 1 %, so a small or degenerate
# sample cannot divide by zero.
CHI2_LOG_SCATTER_FLOOR = 0.01
DESI_CHI2_MAD_CUT = 3.0  # Z24 eq. 5: (chi2 - median) / (mean absolute deviation from the median) in S/N bins, cut at 3
DESI_CHI2_SNR_EDGES = (0, 10, 20, 30, 50, 80, 120, 200, float("inf"))  # ours: Z24 bins "stars of similar S/N"
# Z24 Fig. 8: abundances are shown only above these [Fe/H] ("limitation of the training sample"):
# N and Ti above -1.5, C, O, Al, Si, Ca, Cr, Mn, Ni above -2.0. ddpayne flags, never deletes.
DESI_FEH_FLOORS = {"n_fe": -1.5, "ti_fe": -1.5, "default": -2.0}
# Z24 sec. 3.2: LAMOST DR9's training set added "the LAMOST metal-poor star sample ([Fe/H] < -1.7)
# of Li et al. (2018)" to reach [Fe/H] ~ -4; the DESI demo's metal-poor label source starts there too.
METAL_POOR_SAMPLE_FEH = -1.7
BINARY_DPARALLAX_CUT = 3.0  # X19 sec. 5.4.3: snr_dparallax > 3 -> not single
BINARY_UNDEFINED = ((5500.0, 3.6), 7000.0)  # X19 5.4.3: no flag for Teff<5500 & logg<3.6, Teff>7000

# --- Catalogue (docs/spec.md sec. 9, X19 Table 4 and sec. 5) -------------------------------------------
RECOMMENDED_FROM = {  # X19 Table 4: which training set's value the recommended catalogue adopts
    "apogee": ("teff", "logg", "vmic", "feh", "c_fe", "n_fe", "o_fe", "ca_fe", "ni_fe", "cu_fe"),
    "galah": ("na_fe", "mg_fe", "al_fe", "si_fe", "ti_fe", "cr_fe", "mn_fe", "co_fe", "ba_fe"),
}
ALWAYS_KEPT = ("teff", "logg", "feh")  # docs/spec.md sec. 9: never set to -999 by X_flag
METAL_POOR_BLEND_FEH = (-1.0, -0.6)  # docs/spec.md sec. 9: metal-poor model below -1.0, overall above -0.6
ALPHA_FE_ELEMENTS = ("mg_fe", "si_fe", "ca_fe", "ti_fe")  # X19 Table 3 note 4
MISSING = -999.0  # X19 catalogue convention for rejected values

# Fit: a parameter within this fraction of its bound (in scaled units; the bound is the training
# range plus FitConfig.margin) is reported as <label>_at_bound: the bound, not the spectrum, set it.
AT_BOUND_TOLERANCE = 0.005
# Coverage: a fit is out_of_coverage when its labels lie farther from the training set (distance
# to the COVERAGE_K-th nearest training star in min-max scaled label space) than
# COVERAGE_QUANTILE of the training stars lie from their own k-th neighbours; in the spirit of
# X19 Fig. 6 (training-star density over label space), the cut is ours.
COVERAGE_K = 10
COVERAGE_QUANTILE = 0.99
# The labels the coverage is judged in: the stellar parameters, as X19 Fig. 6 shows the training
# set (in 16 noisy dimensions every fitted star looks far from every training star: 35 % of the
# synthetic demo's fits were "out" that way). A pinned abundance says so through <x>_at_bound.
COVERAGE_LABELS = ("teff", "logg", "feh")

# App: a click selects the nearest shown star within this many screen pixels, else nothing (a
# click on empty sky must not pick a distant star).
CLICK_RADIUS_PX = 10.0
# App: below this S/N the inspector cautions that the labels are noisy whatever the flags say:
# X_flag is assigned per (Teff, [Fe/H]) bin from S/N > 30 stars (X19 sec. 5.4.2 notes that low
# S/N stars may carry X_flag 1), and X19 Fig. 9 finds Teff precise to 60 K only above S/N 20.
LOW_SNR_CAUTION = 20.0
# App: the spectrum view's line markers, vacuum wavelengths [A] (NIST Atomic Spectra Database),
# the features an astronomer looks for first in a low-resolution optical spectrum.
LINE_MARKERS_AA = (("Ca II K", 3934.78), ("Ca II H", 3969.59), ("Hδ", 4102.89), ("Hγ", 4341.69),
                   ("Hβ", 4862.69), ("Mg b", 5168.76), ("Mg b", 5174.13), ("Mg b", 5185.05),
                   ("Na D", 5891.58), ("Na D", 5897.56), ("Hα", 6564.61), ("Ca II", 8500.36),
                   ("Ca II", 8544.44), ("Ca II", 8664.52))
# App: zoom presets of the spectrum view, vacuum wavelength windows [A] around those features.
ZOOM_PRESETS_AA = {"Ca II H & K": (3900.0, 4020.0), "Hβ": (4820.0, 4910.0),
                   "Mg b": (5140.0, 5210.0), "Na D": (5870.0, 5915.0), "Hα": (6530.0, 6600.0),
                   "Ca II triplet": (8470.0, 8690.0)}
# App: at most this many other visits of a star are overlaid on its spectrum.
MAX_REPEAT_VISITS = 4

# Validation of populations the training set lacks (validation.studies.population_shift): a
# label X_flag marks measured in at least SHIFT_FLAG_FRACTION of the stars should follow its own
# truth there: slope d fitted / d true >= SHIFT_MIN_SLOPE where [X/Fe] spread independently, and
# |bias| below SHIFT_MAX_BIAS (K for Teff, dex otherwise) in a metal-poor, low-alpha accreted
# population. The project's acceptance goals for honest flags (docs/validation.md); Z24 sec. 4
# reads [Mg/Fe] and [Al/Fe] of such a population (Gaia-Enceladus) to 0.05-0.1 dex.
SHIFT_FLAG_FRACTION = 0.9
SHIFT_MIN_SLOPE = 0.85
SHIFT_MAX_BIAS = {"teff": 100.0, "logg": 0.15, "default": 0.08}
