"""Reproducible benchmarks for rds2bq: ``python -m bench`` (or ``make bench``).

Every figure is measured against its baseline in the same run and printed as one markdown table;
``bench/README.md`` says what each figure means and how it is measured. These are not timed tests:
nothing here fails a build, it reports.
"""
