"""Analysis of a results table: does the rounding mode change how well the network learns?

``analyze(results, report_dir)`` reads a ``trials.parquet`` file or a Tune experiment
directory and writes ``report.md``, ``summary.json`` and PNG plots with the five findings
of the study (SPEC.md) and paired statistics for every pair of modes.

Decisions, once for the whole package (each module repeats the ones it implements):

- Accuracy is ``test_acc``. Only trials with status ``finished`` and a finite ``test_acc``
  are used; the others are excluded and listed with the reason (``excluded``), and grid
  cells without a used trial are listed too (``missing_cells``).
- A *configuration* is (width, depth) plus every extra axis: any config column of
  ``qatsweep.schema`` that takes more than one value in the table (bits, per_channel, lr,
  ...). A *cell* is a configuration and a seed. The findings are computed over all used
  trials and again per combination of extra-axis values (``groups``).
- Seed std is the sample standard deviation (``ddof=1``) across seeds within a
  configuration, averaged over the configurations that have at least two seeds.
- A win is strict: the best quantized mode (every mode but baseline) in a cell wins only if
  no other quantized mode has an equal ``test_acc``; otherwise the cell is a tie. Only
  cells with every quantized mode count.
- The modes are those in the table. Gaps against nearest exist only when nearest is
  present; penalties (baseline − mode) only when baseline is.
- Pairs of modes are compared over the cells where both have a result: mean difference
  with a percentile bootstrap CI (10,000 resamples of the differences drawn with
  ``numpy.random.default_rng(seed)``, seed 0 by default), win/tie/loss counts and scipy's
  Wilcoxon signed-rank p-value, which is 1.0 when every difference is zero.
"""

from __future__ import annotations

from qatsweep.analysis.pipeline import REPORT_FILE, SUMMARY_FILE, analyze

__all__ = ["REPORT_FILE", "SUMMARY_FILE", "analyze"]
