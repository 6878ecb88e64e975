"""registry:2-compatible notifications, sent from a durable spool (see notifier.py)."""
