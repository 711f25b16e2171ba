"""The common (blog/official-copy) formulations, kept as benchmark and test baselines only."""
