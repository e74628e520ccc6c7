"""A service-shaped aiosqsq app: ``aiosqsq run examples.service.app:app``."""
