"""annzoo's CPU benchmark suite: every figure a ratio measured in one process.

``python benchmarks/run.py [--quick] [--only NAME]``runs the benchmarks in
`NAMES` and writes their section of ``benchmarks/RESULTS.md``.

Each benchmark module has ``run(settings) -> core.Section``:

=================  =================================================================
``overhead``       annzoo's recipe runner against the same network by hand in Keras
``dispatch``       annzoo's default fit settings against a naive ``model.fit``
``pipeline``       annzoo's input pipeline against one batch repeated
``tuning``         share of an ``annzoo.tune`` search spent outside training steps
``tuning_recipe``  the same share for a search at a recipe's own size
``scaling``        step time and peak memory against batch, width, depth, length
=================  =================================================================
"""

NAMES = ("overhead", "dispatch", "pipeline", "tuning", "tuning_recipe", "scaling")
