"""Search over any step decoder: one options object (options), the decoder protocol (protocol), greedy,
beam and sampling behind generate() (search, topk); ensembles; vocabulary shortlists; int8 weights."""
