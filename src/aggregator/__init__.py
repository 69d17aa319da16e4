"""The aggregator: a Faust app that turns usage events into running totals per
subscription, charge and billing period, answers current usage, and closes periods."""

from aggregator.compiled import install

install()  # the compiled hot path only when built from these very sources
