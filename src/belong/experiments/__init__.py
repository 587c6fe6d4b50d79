"""Online experiments: declarations and their store, assignment, exposure, metrics over the event log, analysis,
off-policy evaluation. See docs/EXPERIMENTS.md."""
