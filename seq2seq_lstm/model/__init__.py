"""The networks: LSTM cells, attention, encoder, decoder, and the seq2seq / language models built from them.

Only ``nn.Module``s and their state values live here: no Lightning, no SentencePiece, no files.
"""
