"""Apps that ``aiosqsq run`` loads in the fault tests."""
