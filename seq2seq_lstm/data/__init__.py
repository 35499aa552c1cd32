"""Text to batches: the SentencePiece tokenizer, corpus readers, the length filter, token-budget batches
and the Lightning DataModules.

    ds = load_parallel("data/ding/train", "en", "de")        # corpus.py: datasets.Dataset of line, src, tgt
    ds = tokenize(ds, tokenizer, num_proc=2)                 # batching.py: + src_ids, tgt_ids (cached)
    ds, report = filter_by_length(ds, 1, 100, 3.0)           # report says how many pairs each rule dropped
    sampler = TokenBatchSampler(lengths..., batch_tokens=4096)   # length-bucketed, shuffled, sharded
    DataLoader(TokenDataset(ds), batch_sampler=sampler, collate_fn=Collator())

With ``data.sample_alpha`` > 0, ``subword_sampling.py`` re-encodes each training batch from its text with
SentencePiece sampling (a new segmentation every epoch); evaluation keeps the cached ids.
"""
