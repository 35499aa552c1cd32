"""Looking at finished and running trainings: their curves (:mod:`.curves`), pictures of them
(:mod:`.plot`) and the run directories of a folder (:mod:`.listing`).

Reads what `s2s train` leaves in a run directory and never imports the training stack (Lightning),
so `s2s plot` and `s2s runs` start fast.
"""
