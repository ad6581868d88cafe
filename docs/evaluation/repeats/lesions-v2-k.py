"""Run lesions-v2-k's declared analysis again, unchanged, as a repeated look with its reason.

bench.lesion_accuracy is a frozen path of the declaration and has no flag for a repeat's
reason, so this wrapper hands irtmon.protocol.open_evaluation the reason and calls its main
with the declared arguments. Run from the worktree at a194b16 (frozen paths as at 52f5ac1).
"""

import functools
import sys

import bench.lesion_accuracy as la
from irtmon.protocol import open_evaluation

REASON = (
    "the run of 2026-12-03 07:24:04Z (same command, same commit) was cut off by the end of "
    "its session at 895 of 1,000 patients, before any result was computed; nothing of it was "
    "seen or written. This look runs the same declared analysis, unchanged, to its end."
)
print("bench.lesion_accuracy from", la.__file__, flush=True)
la.open_evaluation = functools.partial(open_evaluation, repeat_reason=REASON)
sys.exit(la.main(sys.argv[1:]))
