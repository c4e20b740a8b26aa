"""Training: the loop (:mod:`.loop`), its checkpoints, optimizers, seeding and TensorBoard logging."""
