"""Search over any step decoder: greedy, beam and sampling; ensembles; vocabulary shortlists; int8 weights."""
