"""turncheck: TURN/STUN connectivity tester."""

__version__ = "0.1.0"
