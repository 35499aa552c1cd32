"""Text in, text out: the Translator (batching, long-input splitting, detokenizing) and attention plots."""
