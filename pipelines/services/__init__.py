"""What stages, flows, benchmarks and serving share: fitting, tuning, scoring, diagnosis,
augmentation reports, plots."""
