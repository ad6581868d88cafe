"""Every number of story v2, with where it comes from.

Each constant names its source in a comment: a paper (with the number taken) or ``assumption``.
``docs/clinic/story-v2.md`` carries the same table for readers; the calibrated values (marked
``derived``) are recomputed from their published targets by ``python -m
clinic.story_v2.calibration``, and ``tests/unit/test_clinic_story_v2.py`` checks that the drawn
stories reproduce the published proportions.
"""

from __future__ import annotations

from schemas.enums import ImmunePhenotype

STORY_VERSION = "v2"

# ----------------------------------------------------------------------------- immune phenotype
PHENOTYPE_SHARES: dict[ImmunePhenotype, float] = {
    ImmunePhenotype.INFLAMED: 0.440,  # Park et al., JCO 2022: 44.0 % inflamed
    ImmunePhenotype.EXCLUDED: 0.371,  # Park et al., JCO 2022: 37.1 % immune-excluded
    ImmunePhenotype.DESERT: 0.189,  # Park et al., JCO 2022: 18.9 % immune-desert
}
"""Shares of the phenotype called on a biopsy; thresholds on the measured infiltration give them
exactly (the phenotype is a discretised infiltration, as the AI phenotype of Park et al. is)."""

# ----------------------------------------------------------------------------- PD-L1 TPS
PDL1_SHARES = (0.403, 0.286, 0.311)
"""TPS < 1 %, 1-49 %, >= 50 % in 16,666 NSCLC (Huang et al., Mod Pathol 2021: TPS 1-49 28.6 %,
TPS >= 50 31.1 %)."""

# ----------------------------------------------------------------------------- response
OBJECTIVE_RESPONSE_RATE = 0.36
"""PEMBRO-RT (Theelen et al., JAMA Oncol 2019): ORR 36 % at 12 weeks with SBRT + pembrolizumab
(responses measured on non-irradiated lesions)."""
INFLAMED_RESPONSE_ODDS_RATIO = 1.90
"""Pan-tumour AI phenotype study (JITC 2024, 1,806 patients): response 26.3 % inflamed vs
15.8 % not, odds ratio (0.263/0.737)/(0.158/0.842) = 1.90."""
PDL1_RESPONSE_AUC = 0.65
"""Lu et al., JAMA Oncol 2019 (meta-analysis, 8,135 patients): summary AUC of PD-L1 IHC 0.65."""

# derived by clinic.story_v2.calibration from the three targets above and the kappas below
RESPONSE_SLOPE = 0.747  # derived: logit slope on the immune drive (I + A) / sqrt(2)
RESPONSE_INTERCEPT = -0.644  # derived: overall response 36 %
PDL1_IMMUNE_LOADING = 0.866  # derived: share of PD-L1 driven by the immune drive (AUC 0.65)
LESION_INFILTRATION_CORRELATION = 0.728  # derived: between-lesion correlation of infiltration

PDL1_KAPPA_REPEAT_BIOPSY = 0.711
"""Two biopsies of one tumour, PD-L1 categories (Respir Res 2022, 4,550 patients): kappa 0.711."""
PDL1_KAPPA_PRIMARY_METASTASIS = 0.533
"""Primary vs metastasis, PD-L1 categories (same study): kappa 0.533."""
SAMPLING_RELIABILITY = 0.948  # derived: latent correlation giving kappa 0.711 (repeat biopsy)
"""Applied to the TIL count of a biopsy as well (assumption: the same sampling error as PD-L1)."""

# ----------------------------------------------------------------------------- course of disease
PSEUDO_PROGRESSION_RATE = 0.060
"""Park et al., Radiology 2020 (17 studies, 3,402 patients): pooled pseudo-progression 6.0 %."""
PSEUDO_PROGRESSION_AT_FIRST_FOLLOW_UP = 0.8
"""assumption (DESIGN anchor: "mostly at the first follow-up"; no pooled number found)."""
LATE_RESPONSE_SHARE = 0.25
"""Gettinger et al., JCO 2016 (nivolumab first line): 9 of 12 responses (75 %) by the first
assessment, so 25 % of responses are first seen later; pseudo-progressions count among them."""
HYPERPROGRESSION_RATE = 0.132
"""Zhao et al., Front Oncol 2022 (41 studies, 6,009 patients): pooled HPD 13.2 %."""
DURABLE_STABLE_DISEASE_RATE = 0.21
"""derived from PEMBRO-RT (median PFS 6.6 months, so about 52 % progression-free at 6 months;
ORR 36 % with about 85 % of responders still in response at 6 months, median duration of
response 12.5 months in KEYNOTE-001): 0.52 - 0.36 x 0.85 = 0.21 of patients without response
and without progression for 6 months. Approximate."""
DISSOCIATED_RESPONSE_RATE = 0.125
"""Dissociated response in NSCLC on immunotherapy (Sci Rep 2024, validation cohort): 10 of 80
patients (12.5 %). Drawn among patients with at least two non-irradiated lesions so that the
overall rate is 12.5 % (see ``calibration``)."""
DISSOCIATED_GIVEN_ELIGIBLE = 0.169  # derived: 0.125 / P(>= 2 non-irradiated lesions)
NEW_LESION_SHARE_PROGRESSION = 0.309
"""Progression patterns on immunotherapy, stage IV NSCLC (143 patients, 97 progressions): new
sites only 10.3 % + new and initial sites 20.6 % = 30.9 % of progressions bring new lesions."""
NEW_LESION_SHARE_HYPERPROGRESSION = 0.5  # assumption (HPD criteria often include new lesions)
NEW_LESION_SHARE_PSEUDO_PROGRESSION = 0.3  # assumption (iRECIST allows new lesions in iUPD)
TWO_NEW_LESIONS = 0.3  # assumption: share of new-lesion events with two lesions, not one

# ----------------------------------------------------------------------------- tumour growth
DOUBLING_DAYS_MEDIAN = 139.0
"""Untreated NSCLC, CT volume doubling time 139 days (serial pre-treatment PET/CT, 34 patients;
Cancer Imaging / PMC3933267)."""
DOUBLING_LOG_SD_PATIENT = 0.5  # assumption: spread of growth between patients (log scale)
DOUBLING_LOG_SD_LESION = 0.25  # assumption: spread between lesions of one patient (log scale)
HYPERPROGRESSION_RATE_RATIO = (2.0, 4.0)
"""Growth-rate ratio during / before treatment: at least 2 (Champiat et al. 2017 HPD criterion;
Kas et al., JAMA Oncol 2020, compare definitions); upper bound 4 is an assumption."""
STABLE_DISEASE_DIAMETER_CHANGE = (-0.25, 0.15)
"""assumption: diameter change of a durable stable disease over 250 days, inside RECIST's
stable band (-30 %, +20 %)."""

# ----------------------------------------------------------------------------- response shape
RESPONSE_NADIR_DIAMETER = (0.10, 0.65)
"""assumption: nadir diameter / baseline of a responding lesion (below 0.7 is RECIST PR; the
lowest values vanish, complete response)."""
RESPONSE_TAU_DAYS = (15.0, 35.0)
"""assumption, sized so that early responders reach RECIST PR by the first assessment (6-9
weeks), as 75 % of responders do (Gettinger 2016)."""
LATE_RESPONSE_ONSET_DAYS = (60.0, 150.0)  # assumption: shrinkage starts after the first scan
PSEUDO_PROGRESSION_PEAK_DIAMETER = (1.25, 1.45)
"""assumption: lesion diameter / baseline at the pseudo-progression peak (beyond RECIST +20 %)."""
PSEUDO_PROGRESSION_WIDTH_DAYS = (14.0, 24.0)  # assumption (as story v1)

# ----------------------------------------------------------------------------- radiotherapy
RT_SCHEDULES = ((24.0, 3, 0.5), (50.0, 4, 0.5))
"""Gy, fractions, share: the ablative schedules of the pooled PEMBRO-RT (3 x 8 Gy) and MDACC
(50 Gy / 4) trials (Theelen et al., Lancet Respir Med 2021); equal shares are an assumption."""
ICI_AFTER_LAST_FRACTION_DAYS = (1, 7)
"""PEMBRO-RT: pembrolizumab 200 mg every 3 weeks, started within 7 days after SBRT."""
LOCAL_CONTROL_1Y = 0.895
"""Luke et al. (SBRT + pembrolizumab, 139 metastases): one-year treated-metastasis control
89.5 %; ablative RT controls about 90 % at one year (DESIGN anchor)."""
LOCAL_FAILURE_RADIOSENSITIVITY = 0.7  # assumption: log-hazard per SD of radiosensitivity
LOCAL_FAILURE_HAZARD_PER_DAY = 2.46e-4  # derived: one-year control 89.5 % over radiosensitivity
RT_ONLY_PARTIAL_RESPONSE = 0.15
"""derived from Luke et al., JCI 2023 (irradiated ORR 34 %, overall ORR 22 %): irradiated
lesions shrinking >= 30 % without a systemic response, (0.34 - 0.22) / (1 - 0.22) = 0.15."""
RT_PLATEAU_DIAMETER_SD = 0.14  # assumption: spread of the plateau diameter after SBRT alone
RT_PLATEAU_DIAMETER_MEAN = 0.845  # derived: P(plateau <= 0.7) = 0.15 with the SD above
RT_TAU_DAYS = (60.0, 120.0)
"""assumption, informed by post-SBRT CT series (Cancer Imaging 2022: irradiated lesions start
to shrink at a median of 4 months)."""
GTV_IS_PRIMARY = 0.6  # assumption: the irradiated lesion is the lung primary, else a metastasis
TWO_LESIONS_IN_FIELD = 0.3
"""assumption (PEMBRO-RT irradiated one site; multisite SBRT trials two or more: Luke et al.
2018, 94.5 % two sites)."""

# ----------------------------------------------------------------------------- lung after RT
RT_LUNG_CHANGE_ONSET_MEDIAN_DAYS = 119.0
"""Dahele et al., JTO 2011 (61 patients after lung SBRT): median time to first radiological
change 17 weeks."""
RT_LUNG_CHANGE_ONSET_LOG_SD = 1.66
"""derived from Dahele 2011: 54 % of lesions with changes within 6 months and 25 % first seen
after one year; a log-normal onset with median 119 d and log-SD 1.66 gives 60 % and 25 %."""
RT_LUNG_CHANGE_RAMP_DAYS = 60.0  # assumption: days from onset to full density
RT_LUNG_CHANGE_PEAK_HU = (-500.0, -50.0)
"""assumption: mild (ground glass) to moderate (consolidation) changes; Dahele 2011 scored most
changes mild to moderate."""
RT_LUNG_CHANGE_MARGIN_MM = (5.0, 15.0)  # assumption: extent of the change beyond the GTV
READER_INCLUDES_RT_CHANGE = 0.3  # assumption: a reader draws the dense change into the lesion

# ----------------------------------------------------------------------------- lesions
LESION_COUNT = (2, 6)
"""Lesions per patient at baseline, uniform (assumption); at least two because the trials
required a non-irradiated lesion to follow (Theelen et al. 2021 pooled analysis)."""
METASTASIS_ORGAN_WEIGHTS = {
    "bone": 34.3,
    "lung": 32.1,
    "adrenal": 16.7,
    "liver": 13.4,
    "lymph_node": 9.5,
}
"""Tamura et al., Mol Clin Oncol 2015 (729 metastatic NSCLC): bone 34.3 %, lung 32.1 %,
adrenal 16.7 %, liver 13.4 %, extrathoracic nodes 9.5 % (brain 28.4 % left out: not on a chest
CT). Nodes are placed in the mediastinum."""
BASELINE_LONG_AXIS_MM = {
    "primary": (15.0, 45.0),
    "lung": (6.0, 30.0),
    "liver": (8.0, 35.0),
    "adrenal": (10.0, 35.0),
    "bone": (10.0, 25.0),
}
"""assumption (uniform); the lower bounds put some lesions under RECIST's 10 mm. The phantom's
slots cap each lesion (see ``anatomy``), which truncates the largest draws."""
NODE_SHORT_AXIS_MM = (10.0, 22.0)
"""assumption: metastatic nodes; RECIST 1.1: >= 15 mm short axis measurable, 10-15 mm
pathological non-target, < 10 mm normal."""
NODE_ELONGATION = (1.1, 1.5)  # assumption: long / short axis of a node
NEW_LESION_DIAMETER_MM = (6.0, 15.0)  # assumption: size of a new lesion when first seen
VISIBLE_DIAMETER_MM = 3.0  # assumption: below this long axis a lesion is gone on CT

# ----------------------------------------------------------------------------- immune state in time
ON_TREATMENT_LOG_CD8_RISE = 0.9
"""Dejardin et al., CCR 2023 (376 paired biopsies): a rise of 0.9 on the ln scale (2.5-fold) in
CD8 density on treatment went with benefit; Chen/Tumeh: CD8 rises in responders, stays in
non-responders (mean 0 there)."""
ON_TREATMENT_LOG_CD8_SD = 0.3  # assumption: spread of that change between lesions
LOG_TIL_PER_SD = 1.5
"""assumption: ln TIL density per SD of infiltration (densities span about two orders of
magnitude between tumours)."""
IMMUNE_RAMP_DAYS = 21.0  # assumption: time constant of the on-treatment change
INFLAMED_TIL_PER_MM2 = 250.0
"""Rakaee et al., JAMA Oncol 2023 (685 NSCLC on ICI): high TIL >= 250 cells/mm2 went with
response; used as the intratumoral density at the inflamed threshold."""
STROMAL_TIL_AT_DESERT_THRESHOLD = 300.0  # assumption (slide rendering scale)
STROMAL_LOG_TIL_PER_SD = 1.2  # assumption (slide rendering scale)
ON_TREATMENT_BIOPSY = 0.3  # assumption (as story v1)

# ----------------------------------------------------------------------------- CT
CT_CD8_AUC = 0.67
"""Sun et al., Lancet Oncol 2018: CT radiomic CD8 signature, validation AUC 0.67."""
CT_NOISE_SD = 2.47  # derived: noise on the lesion's infiltration giving AUC 0.67 (CD8 high/low)
CT_NOISE_LESION_SHARE = 0.5  # assumption: half of that noise is fixed per lesion, half per scan
LIVER_LESION_ENHANCEMENT = 0.5
"""assumption (rendering): iodine of a liver metastasis relative to other lesions, so that it
is hypodense against the enhancing liver in the portal-venous phase."""
