"""Stand-alone tools run by hand or by make, beside the benchmarks in ``bench/`` (which holds only what
``pytest bench/ --benchmark-only`` runs and its helpers): the device check (``gpu_check*.py``), the sm_90 SASS
readers (``sass_report.py``, ``sass_cuda.py``) and the CPU timing scripts (``cpu_peaks.py``,
``nonlocal_cpu_interleaved.py``). Each runs as ``python tools/<name>.py`` or ``python -m tools.<name>`` from
the repository root; results go to ``bench/results/``.
"""
