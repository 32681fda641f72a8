"""Scratch home of the mapping ensemble until hscseq.fidelity becomes a package (issue #14)."""
