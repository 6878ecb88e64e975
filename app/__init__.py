"""Kura's HTTP layer: thin Starlette handlers over the ``storage`` façade."""
