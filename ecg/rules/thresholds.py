"""Numeric criteria of the ECG statements, in one place (their hash is part of the ruleset digest).

Sources: AHA/ACCF/HRS recommendations for the standardization and
interpretation of the ECG (2007-2009: Part III intraventricular conduction,
Part IV ST/T/QT, Part V LVH), the Fourth Universal Definition of MI (2018)
for STEMI thresholds.
"""

from __future__ import annotations

from typing import Final

BRADY_BPM: Final = 60.0
TACHY_BPM: Final = 100.0
#: AF: irregularly irregular RR (median |successive difference| over median RR, and RR CV) with no P wave.
AF_SUCCESSIVE_DIFF: Final = 0.08
AF_RR_CV: Final = 0.08
AF_RVR_BPM: Final = 110.0
#: Flutter: atrial activity at 220-350/min with a concentrated spectral peak.
FLUTTER_HZ: Final = (3.67, 5.83)
FLUTTER_CONCENTRATION: Final = 0.35
#: ... and atrial activity of flutter size (waves of >= 0.1 mV): a spectral peak in a noise-level residual is noise.
FLUTTER_MIN_RMS_MV: Final = 0.02
PACED_FRACTION: Final = 0.5
#: Premature atrial complex (statement): RR at most this fraction of the preceding RRs, then a pause of at least
#: PAC_PAUSE x its own RR (the sinus node reset); the beat label alone (85%) also fires on sinus arrhythmia.
PAC_PREMATURITY: Final = 0.8
PAC_PAUSE: Final = 1.2
VT_MIN_BEATS: Final = 3
VT_MIN_BPM: Final = 100.0
#: Consecutive beats of a VT run correlate at least this much (consistent morphology; the classifier's "alike").
VT_MORPHOLOGY_CORRELATION: Final = 0.8
#: Complete AV block: the P-to-QRS intervals spread at least this fraction of the P-P cycle (SD); dissociated P
#: waves spread uniformly (SD 0.29 of the cycle), conducted ones by the measurement error only.
DISSOCIATION_PR_SPREAD: Final = 0.1
FIRST_DEGREE_PR_MS: Final = 200.0
#: 2nd-degree: a pause of at least this many median RR containing a non-conducted atrial wave.
DROPPED_BEAT_RR: Final = 1.6
#: 3rd-degree: atrial rate exceeds the ventricular rate by this much, both regular.
AV_DISSOCIATION_EXTRA_BPM: Final = 15.0
REGULAR_CV: Final = 0.12
#: A regular rhythm: at least this fraction of RR intervals within REGULAR_CV of the median.
REGULAR_FRACTION: Final = 0.9
#: 2:1 conduction: the wave half an RR from the conducted P repeats it across leads (correlation, size ratio) ...
HALF_RR_CORRELATION: Final = 0.85
HALF_RR_AMPLITUDE: Final = (0.5, 2.0)
#: ... and a blocked P sits after the T wave's end (0 at the T peak, 1 at its end): a "P" anywhere on the T wave,
#: its terminal half included, may be the T itself (MIT-BIH 124 and 220 gave false STAT 2:1 blocks from the T's
#: descending limb at 0.51 and 0.69 on two leads); on the T wave only the T-free copy (>= 3 leads) can show it.
HALF_RR_T_POSITION: Final = 1.0
#: ... or, anywhere on the T wave, repeats it with the T wave's direction taken out of every lead (the T wave is one
#: vector and vanishes; a blocked P keeps its part across it; sinus look-alikes measured <= 0.77, blocked P >= 0.94).
HALF_RR_OFF_T_CORRELATION: Final = 0.9
#: 2:1 flutter without a flutter wave clear of the T: the T-free copy (HALF_RR_OFF_T_CORRELATION) and the whole
#: T-free cycle repeating at half the RR by at least this correlation (sinus tachycardia 110-175/min measured < 0.45,
#: 2:1 flutter 0-0.9: found in about a quarter of synthetic 2:1 flutter, never on synthetic sinus tachycardia).
FLUTTER_HALF_RR_PERIODICITY: Final = 0.55
#: Atrial rate of a 2:1 AV block (discrete P waves) and of atrial flutter (sawtooth) in /min.
AV_BLOCK_2TO1_MAX_ATRIAL_BPM: Final = 200.0
FLUTTER_BPM: Final = (220.0, 350.0)
#: No P wave: no wave in diastole taller than this (mV, spatial magnitude; under the smallest detectable P).
P_ABSENT_MV: Final = 0.02
#: ... and a flat baseline between T and QRS at least this long (ms; 10 ms after the T end to 30 ms before the QRS):
#: flutter waves or a P wave fused with the T wave leave none.
ISOELECTRIC_TQ_MS: Final = 20.0
#: Rhythms without P waves (AHA/ACCF/HRS 2009 Part II rate bands): junctional rhythm < 60/min,
#: accelerated junctional rhythm 60-100/min, supraventricular tachycardia > 100/min (narrow QRS);
#: idioventricular (ventricular escape) rhythm < 50/min with a wide QRS (>= 120 ms); "narrow" is < IVCD_QRS_MS.
WIDE_QRS_MS: Final = 120.0
JUNCTIONAL_MAX_BPM: Final = 60.0
IDIOVENTRICULAR_MAX_BPM: Final = 50.0
#: A regular narrow-complex tachycardia this fast needs attention now (like AF with RVR).
SVT_CRITICAL_BPM: Final = 150.0
#: Wide-QRS tachycardia (ACC/AHA/ESC 2003 SVT guideline; AHA/ACCF/HRS 2009 Part II): a regular rhythm at
#: >= 100/min with QRS >= WIDE_QRS_MS and no P wave locked to the QRS.  Without a diastole to look at, "no P wave"
#: is shown on the median beat between QRS end and the next QRS: nothing but the T wave (one vector) there, no
#: wave off the T vector larger than this (mV, spatial magnitude; a P wave is >= 0.05 mV, median-beat noise ~0.01).
WIDE_TACHY_MIN_BPM: Final = 100.0
WAVE_OFF_T_ABSENT_MV: Final = 0.04
#: ... and at >= this rate no window is left to look at: a regular wide-QRS rhythm this fast is no sinus rhythm.
WIDE_TACHY_NO_WINDOW_BPM: Final = 200.0
WIDE_TACHY_MIN_WINDOW_MS: Final = 100.0
#: AV dissociation in a wide-QRS tachycardia (ventricular tachycardia): atrial waves in the QRST-cancelled signal
#: form one regular train (each interval within DISSOCIATION_TOLERANCE of a whole number of atrial cycles) at
#: least this many waves long, at a rate slower than the ventricles and not 1:2 / 1:1 / 2:1 with them.
DISSOCIATION_MIN_WAVES: Final = 5
DISSOCIATION_TOLERANCE: Final = 0.08
DISSOCIATION_MIN_BPM: Final = 30.0
#: ... found in at least this fraction of the atrial cycles they span (the rest hidden in QRS complexes) ...
DISSOCIATION_MIN_COVERAGE: Final = 0.4
#: ... at most this fraction of the ventricular rate.
DISSOCIATION_MAX_RATIO: Final = 0.85
COMPLETE_BBB_QRS_MS: Final = 120.0
IVCD_QRS_MS: Final = 110.0
LAD_DEG: Final = -30.0
LAFB_DEG: Final = -45.0
RAD_DEG: Final = 90.0
LPFB_DEG: Final = 90.0
LOW_VOLTAGE_LIMB_MV: Final = 0.5
LOW_VOLTAGE_PRECORDIAL_MV: Final = 1.0
SOKOLOW_LYON_MV: Final = 3.5
CORNELL_MALE_MV: Final = 2.8
CORNELL_FEMALE_MV: Final = 2.0
#: STEMI (4th UDMI): J-point elevation in 2 contiguous leads; V2-V3 depend on age and sex.
STE_OTHER_MV: Final = 0.1
STE_V2V3_MEN_40_MV: Final = 0.2
STE_V2V3_MEN_UNDER_40_MV: Final = 0.25
STE_V2V3_WOMEN_MV: Final = 0.15
#: Unknown age/sex: the most sensitive V2-V3 threshold, so a STEMI is never missed for lack of demographics.
STE_V2V3_UNKNOWN_MV: Final = 0.15
ST_DEPRESSION_MV: Final = -0.05
T_INVERSION_MV: Final = -0.1
QTC_LONG_MALE_MS: Final = 450.0
QTC_LONG_FEMALE_MS: Final = 460.0
QTC_LONG_UNKNOWN_MS: Final = 460.0
QTC_CRITICAL_MS: Final = 500.0
#: With no P wave found and less than this between T end and the next QRS, the "T end" may be the next P
#: (P on T at fast rates): no QT statement is made from it.
MIN_TQ_WITHOUT_P_MS: Final = 80.0
