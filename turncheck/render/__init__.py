"""Renderers: a Report (or a plan) in, text out. The format is a choice at the edge."""
