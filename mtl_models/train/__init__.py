"""Training: the trainer and its callbacks, loaders and batching schedules, acceleration
(bf16, channels-last, compile, DDP) and lookahead task affinity."""
