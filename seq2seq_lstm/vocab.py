"""Special ids and markers shared by every model we train: a leaf, so the model never imports SentencePiece.

Every tokenizer trained here fixes ``<pad>`` = 0, ``<unk>`` = 1, ``<s>`` = 2, ``</s>`` = 3, so the
model, the data pipeline and the searches can rely on them without loading a tokenizer.
"""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>")  # in id order
WORD_BOUNDARY = "\u2581"  # "▁": SentencePiece's marker for a space before a piece
