"""Plotting shared by the experiments and the report (matplotlib, imported when drawing).

:mod:`noisereg.plotting.style`: one style per method, the figure and save helpers (PNG + SVG).
:mod:`noisereg.plotting.panels`: seed-paired difference panels, fitted axes, bands.
"""
