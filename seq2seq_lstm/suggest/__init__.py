"""Keyboard-style next-word suggestion: whole words from subword pieces, sessions, keystroke evaluation."""
