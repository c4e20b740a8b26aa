"""Looking at sweeps: a table of every job's overrides and metrics, best FID first."""
