"""seq2seq-lstm: stacked-LSTM encoder-decoders with attention, beam search, next-word suggestion and BLEU.

The package root imports nothing heavy, so `s2s --help` stays fast; import submodules directly.
"""

__version__ = "0.1.0"
