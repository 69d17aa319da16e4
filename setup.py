"""The package's one C extension (everything else is in pyproject.toml): the aggregator's
dedupe marker set for busy subscriptions, `src/aggregator/bigday.c`."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("aggregator.bigday", ["src/aggregator/bigday.c"])])
