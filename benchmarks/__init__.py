"""danlu's benchmark scripts (run as files: python benchmarks/NAME.py).

A regular package, not a namespace one, because opacus 1.6.0's wheel installs a top-level ``benchmarks``
package of its own into site-packages: a namespace package loses to it whatever sys.path says, and
``from benchmarks.common import ...`` then failed in every script here.
"""
