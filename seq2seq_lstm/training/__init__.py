"""Training: the Lightning systems (loss, metrics, optimizers), the trainer setup and the run directory,
and the vocabulary shortlist learned from the training split."""
