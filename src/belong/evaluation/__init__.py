"""Offline evaluation: protocols (:mod:`.splitters`), metrics (:mod:`.metrics`), confidence intervals and paired
tests (:mod:`.stats`), the harness (:mod:`.harness`), the HTML report (:mod:`.report`) and the speed benchmark
(:mod:`.bench`). ``belong evaluate`` and ``belong bench evaluate`` are the command-line entry points."""
