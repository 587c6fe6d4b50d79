"""Online experiments: declarations, assignment, exposure, analysis statistics and off-policy evaluation."""
