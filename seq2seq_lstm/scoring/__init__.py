"""Scores through sacreBLEU: BLEU, chrF, TER, paired significance tests and the worst sentences."""
