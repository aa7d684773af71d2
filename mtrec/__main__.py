"""`python -m mtrec ...` (and `torchrun --nproc-per-node N -m mtrec train ...`): the CLI."""
import sys

from mtrec.cli import main

sys.exit(main())
