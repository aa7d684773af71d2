"""The training engine (placeholder until components/train.py is split into it)."""
