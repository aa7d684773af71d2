"""The training engine: what turns a built model and two encoded splits into trained weights.

One idea per module (components.train wires them into the train step):
- losses: the per-task losses, the training objective (transfer methods' own) and the backbone
  penalties;
- data: an encoded split on the device (Tensors) and the batch indices of an epoch;
- distributed: this process's place under torchrun (Group), the process group, the device and
  the collectives the loop needs;
- checkpoint: the resumable train_state.pt (fingerprint, save, load, resume);
- progress: the per-epoch log line and the in-epoch bar (rank 0 only);
- loop: fit / fit_outcome, the valid loss and a transfer method's second (aux) step.
"""
