"""Becker & Hickl SPC files and devices."""
