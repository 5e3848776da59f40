"""Proof that the real control plane and the stand-in pods behave as a cluster does."""
