"""Garbage collection, online or offline, over any storage driver (operations.md §1.3).

``collector`` runs one collection (leader lock, T0, retention, mark, sweep, tidy); ``touch`` is the
request side every worker runs. Importing this package imports nothing else, so that the storage
modules can use ``touch`` without a cycle.
"""
