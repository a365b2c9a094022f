"""A recipe chosen from the data: ``danlu train PATH`` with no recipe.

inspect.py looks at the data (kind, size, classes, columns, language, image sizes); choose.py turns that
into candidate recipes with their reasons; run.py trains the default, or under ``--time-limit`` the
candidates that fit, and keeps the best on validation with a leaderboard. The CLI side is danlu/cli/auto.py.
"""

from danlu.autorecipe.inspect import DataProfile, inspect_data, looks_like_data

__all__ = ["DataProfile", "inspect_data", "looks_like_data"]
